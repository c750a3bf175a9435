// Synthetic data at scale for the B8 benchmark (scripts/bench-scale.mjs) and for anyone who wants a
// large local database (scripts/scale-data.mjs): users, agents, artifacts, deployments, a month of
// metrics_events and the billing_usage rows that agree with them, written straight into the local
// D1 file of a `--persist-to` directory whose migrations have been applied, before `wrangler dev`
// opens it. Deterministic: the same size, seed and `now` give the same rows (ids included), so two
// runs measure the same database (times are relative to `now`, by default the current time).
//
// Full size (fraction 1) is 10,000 users, 100,000 agents, 100,000 deployments and 1,000,000
// events over the 30 days before `now`. Every row respects the schema (foreign keys, the
// one-active-deployment invariant, ids of the right shape and time). One user, `realSubject`, is
// the bench's own: it owns a busy agent (a fixed share of all events and deployments) and a quiet
// one (ten events), so the per-agent routes are measured against a user with a long history.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";

export const FULL_SIZE = { users: 10_000, agents: 100_000, deployments: 100_000, events: 1_000_000 };
const DAY_MS = 24 * 60 * 60_000;
const WINDOW_MS = 30 * DAY_MS;
/** Share of all events and deployments that belong to the real user's busy agent. */
const BUSY_SHARE = 0.02;
const QUIET_EVENTS = 10;
/** Inactive deployments per agent that still have a runtime script (the rest were removed by retention). */
const LIVE_INACTIVE_PER_AGENT = 2;

export type ScaleOptions = {
  /** 0.01, 0.1, 1 … of FULL_SIZE. */
  fraction: number;
  /** The auth subject (JWT `sub`) of the user the bench signs in as. */
  realSubject: string;
  seed?: number;
  now?: number;
};

export type ScaleReport = {
  userId: string;
  busyAgentId: string;
  quietAgentId: string;
  rows: { users: number; agents: number; deployments: number; events: number; billingUsage: number };
  seconds: number;
};

/** The local D1 database file of a wrangler `--persist-to` directory (exactly one must exist). */
export function localD1File(persistDir: string): string {
  const dir = join(persistDir, "v3", "d1", "miniflare-D1DatabaseObject");
  // metadata.sqlite is miniflare's own bookkeeping; the database is the one named by its hash.
  const files = readdirSync(dir).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite");
  if (files.length !== 1) throw new Error(`expected one D1 database in ${dir}, found ${files.length}`);
  return join(dir, files[0] as string);
}

// mulberry32: small, fast, and the same sequence on every machine.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/** An id of the gateway's layout (src/lib/ids.ts): prefix, 10 chars of time, 16 random chars. */
function idMaker(random: () => number) {
  return (prefix: string, ms: number): string => {
    let time = "";
    let t = Math.floor(ms);
    for (let i = 0; i < 10; i++) {
      time = ALPHABET[t % 32] + time;
      t = Math.floor(t / 32);
    }
    let tail = "";
    for (let i = 0; i < 16; i++) tail += ALPHABET[Math.floor(random() * 32)];
    return `${prefix}_${time}${tail}`;
  };
}

const hex = (random: () => number, chars: number) => {
  let s = "";
  for (let i = 0; i < chars; i++) s += "0123456789abcdef"[Math.floor(random() * 16)];
  return s;
};

/** Fills the local D1 file of `persistDir` (migrations applied, otherwise empty). */
export function fillScaleData(persistDir: string, options: ScaleOptions): ScaleReport {
  const started = performance.now();
  const random = prng(options.seed ?? 20261201);
  const newId = idMaker(random);
  const now = options.now ?? Date.now();
  const from = now - WINDOW_MS;
  const f = options.fraction;
  const nUsers = Math.max(2, Math.round(FULL_SIZE.users * f));
  const nAgents = Math.max(4, Math.round(FULL_SIZE.agents * f));
  const nDeployments = Math.max(nAgents, Math.round(FULL_SIZE.deployments * f));
  const nEvents = Math.round(FULL_SIZE.events * f);

  const db = new DatabaseSync(localD1File(persistDir));
  // The file is in WAL mode (as workerd left it); synchronous OFF is safe here: nothing reads it
  // until this function has returned and the WAL has been checkpointed.
  db.exec("PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON");
  db.exec("BEGIN");
  try {
    // Users: index 0 is the real user.
    const userIds: string[] = [];
    const insertUser = db.prepare("INSERT INTO users (id, auth_subject, created_at, updated_at) VALUES (?, ?, ?, ?)");
    for (let i = 0; i < nUsers; i++) {
      const created = from - DAY_MS * 60 + i;
      const id = newId("usr", created);
      userIds.push(id);
      insertUser.run(id, i === 0 ? options.realSubject : `scale-user-${i}`, created, created);
    }

    // One artifact per user, shared by its deployments (the same code deployed again dedupes).
    const artifactIds: string[] = [];
    const insertArtifact = db.prepare(
      `INSERT INTO deployment_artifacts (id, user_id, sha256, module_code, size_bytes, storage, module_count, created_at)
       VALUES (?, ?, ?, ?, ?, 'd1', 1, ?)`,
    );
    const moduleCode = "export default { fetch() { return Response.json({ output: { text: 'synthetic' } }); } };";
    for (const [i, userId] of userIds.entries()) {
      const created = from - DAY_MS * 59 + i;
      const id = newId("art", created);
      artifactIds.push(id);
      insertArtifact.run(id, userId, hex(random, 64), moduleCode, moduleCode.length, created);
    }

    // Agents: 0 and 1 are the real user's busy and quiet agents; the rest round-robin over users.
    const agentUser: number[] = [];
    const agentIds: string[] = [];
    const insertAgent = db.prepare(
      `INSERT INTO agents (id, user_id, name, status, created_at, updated_at) VALUES (?, ?, ?, 'active', ?, ?)`,
    );
    for (let i = 0; i < nAgents; i++) {
      const owner = i < 2 ? 0 : i % nUsers;
      const created = from - DAY_MS * 45 + i;
      const id = newId("agt", created);
      agentIds.push(id);
      agentUser.push(owner);
      const name = i === 0 ? "busy-agent" : i === 1 ? "quiet-agent" : `agent-${i}`;
      insertAgent.run(id, userIds[owner] as string, name, created, created);
    }

    // Deployments: the busy agent gets BUSY_SHARE of them and the quiet one one; the rest fall on
    // random agents, so some have several and some none (created, never deployed). Created in
    // time order per agent, the newest active and named by the agent's pointer.
    const perAgent = new Array<number>(nAgents).fill(0);
    perAgent[0] = Math.max(1, Math.round(nDeployments * BUSY_SHARE));
    perAgent[1] = 1;
    for (let left = nDeployments - (perAgent[0] as number) - 1; left > 0; left--) {
      const a = 2 + Math.floor(random() * (nAgents - 2));
      perAgent[a] = (perAgent[a] as number) + 1;
    }
    const activeDeployment: string[] = [];
    const insertDeployment = db.prepare(
      `INSERT INTO deployments (id, user_id, agent_id, status, runtime_provider, compatibility_date, invoke_path,
         main_module_name, artifact_id, module_sha256, telemetry_secret_ciphertext, script_name, activation,
         claimed_at, activated_at, first_activated_at, script_removed_at, created_at, updated_at)
       VALUES (?, ?, ?, ?, 'cloudflare', '2026-11-01', '/invoke', 'index.js', ?, ?, 'synthetic', ?, 'auto',
         ?, ?, ?, ?, ?, ?)`,
    );
    const setPointer = db.prepare("UPDATE agents SET active_deployment_id = ? WHERE id = ?");
    const deployed: number[] = [];
    for (let a = 0; a < nAgents; a++) {
      const n = perAgent[a] as number;
      activeDeployment.push("");
      if (n === 0) continue;
      if (a >= 2) deployed.push(a);
      const owner = agentUser[a] as number;
      const span = WINDOW_MS + DAY_MS * 10;
      let last = "";
      for (let k = 0; k < n; k++) {
        const created = from - DAY_MS * 10 + Math.floor(((k + random()) / n) * span * 0.99);
        const id = newId("dep", created);
        const newest = k === n - 1;
        const liveInactive = !newest && k >= n - 1 - LIVE_INACTIVE_PER_AGENT;
        insertDeployment.run(
          id,
          userIds[owner] as string,
          agentIds[a] as string,
          newest ? "active" : "inactive",
          artifactIds[owner] as string,
          hex(random, 64),
          `wh-${id.replace("_", "-")}`,
          created + 500,
          created + 1_000,
          created + 1_000,
          newest || liveInactive ? null : created + DAY_MS,
          created,
          created + 1_000,
        );
        last = id;
      }
      activeDeployment[a] = last;
      setPointer.run(last, agentIds[a] as string);
    }

    // Events in time order (rowid order follows time, as in production): the busy agent gets
    // BUSY_SHARE, the quiet one QUIET_EVENTS spread over the month, the rest go to random deployed agents.
    const insertEvent = db.prepare(
      `INSERT INTO metrics_events (id, user_id, agent_id, deployment_id, source, dedupe_key, event_id, trace_id,
         runtime_provider, kind, ts, duration_ms, status, error_code, input_tokens, output_tokens, bytes_in,
         bytes_out, streaming, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 'cloudflare', 'invoke', ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
    );
    const quietEvery = Math.max(1, Math.floor(nEvents / QUIET_EVENTS));
    for (let i = 0; i < nEvents; i++) {
      const ts = from + Math.floor(((i + random()) / Math.max(1, nEvents)) * WINDOW_MS);
      const r = random();
      const a =
        i % quietEvery === 0 ? 1 : r < BUSY_SHARE ? 0 : (deployed[Math.floor(random() * deployed.length)] as number);
      const owner = agentUser[a] as number;
      const telemetry = random() < 0.3;
      const error = random() < 0.02;
      const eventKey = newId(telemetry ? "evt" : "req", ts);
      insertEvent.run(
        newId("evt", ts),
        userIds[owner] as string,
        agentIds[a] as string,
        activeDeployment[a] as string,
        telemetry ? "telemetry" : "gateway",
        eventKey,
        telemetry ? eventKey : null,
        ts,
        20 + Math.floor(random() * 400),
        error ? "error" : "ok",
        error ? "upstream_exception" : null,
        telemetry ? 10 + Math.floor(random() * 500) : null,
        telemetry ? 10 + Math.floor(random() * 800) : null,
        telemetry ? null : 100 + Math.floor(random() * 2_000),
        telemetry ? null : 200 + Math.floor(random() * 8_000),
        ts + 50,
      );
    }

    // billing_usage as the usage consumer would have left it (the sums of USAGE_SUMS in
    // src/services/metering/record-events.ts), so the reconciliation has nothing to correct.
    db.exec(`
      INSERT INTO billing_usage (id, user_id, period_key, agent_id, requests, errors, duration_ms_total, bytes_in,
        bytes_out, input_tokens, output_tokens, model_input_tokens, model_output_tokens, egress_requests,
        telemetry_events, updated_at)
      SELECT 'use_' || lower(hex(randomblob(13))), user_id, strftime('%Y-%m', ts / 1000, 'unixepoch') AS period, agent_id,
        COALESCE(SUM(source = 'gateway'), 0),
        COALESCE(SUM(source = 'gateway' AND status = 'error'), 0),
        COALESCE(SUM(CASE WHEN source = 'gateway' THEN duration_ms END), 0),
        COALESCE(SUM(CASE WHEN source = 'gateway' THEN bytes_in END), 0),
        COALESCE(SUM(CASE WHEN source = 'gateway' THEN bytes_out END), 0),
        COALESCE(SUM(CASE WHEN source = 'telemetry' THEN input_tokens END), 0),
        COALESCE(SUM(CASE WHEN source = 'telemetry' THEN output_tokens END), 0),
        0, 0, 0,
        COALESCE(SUM(source = 'telemetry'), 0),
        ${now}
      FROM metrics_events GROUP BY user_id, period, agent_id`);
    db.exec("COMMIT");
  } catch (err) {
    db.exec("ROLLBACK");
    db.close();
    throw err;
  }
  const count = (table: string) => Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
  const rows = {
    users: count("users"),
    agents: count("agents"),
    deployments: count("deployments"),
    events: count("metrics_events"),
    billingUsage: count("billing_usage"),
  };
  const ids = db.prepare("SELECT id FROM agents WHERE name IN ('busy-agent', 'quiet-agent') ORDER BY name").all() as {
    id: string;
  }[];
  const userId = (db.prepare("SELECT id FROM users WHERE auth_subject = ?").get(options.realSubject) as { id: string })
    .id;
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
  return {
    userId,
    busyAgentId: ids[0]?.id as string,
    quietAgentId: ids[1]?.id as string,
    rows,
    seconds: (performance.now() - started) / 1000,
  };
}
