// The purge of deleted agents (services/cleanup/purge.ts, the cron's purge_deleted_agents task):
// past the grace period a deleted agent's encrypted secrets, its deployments' secrets snapshots
// and the code no other deployment uses are gone; within it, and for live agents, nothing changes.
// Its statements run on indexes (EXPLAIN QUERY PLAN) and a run is bounded.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import worker from "../src/index";
import { removePurgedBundles } from "../src/services/cleanup/bundle-objects";
import { DELETED_AGENT_GRACE_MS, purgeDeletedAgents } from "../src/services/cleanup/purge";
import { createDeployment } from "../src/services/deployments/create";
import * as modules from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import { createAgent } from "./helpers/deploy-flow";
import { setTierOf } from "./helpers/fixtures";
import { call } from "./helpers/http";

const db = createDb(env.DB);
const DAY_MS = 24 * 60 * 60_000;

type Owner = { headers: Record<string, string>; userId: string };

/** A user on a tier with room for the agents a test makes (deleted agents still count). */
async function owner(): Promise<Owner> {
  const user = await newUser();
  return { headers: user.headers, userId: await setTierOf(user, "pro") };
}

/** An agent with two secrets and one deployment of `moduleCode` (whose snapshot holds them). */
async function agentWithSecrets(o: Owner, moduleCode = modules.fixedAnswer(`purge-${crypto.randomUUID()}`)) {
  const agent = await createAgent(o.headers);
  for (const name of ["API_KEY", "TOKEN"]) {
    const res = await call("PUT", `/v1/agents/${agent.id}/secrets/${name}`, {
      headers: o.headers,
      body: { value: `value-${crypto.randomUUID()}` },
    });
    expect(res.status).toBeLessThan(300);
  }
  const { keyring, tierLimits } = await getConfig(env);
  const deployment = await createDeployment(
    { db, userId: o.userId, keyring, tierLimits, artifacts: env.ARTIFACTS, queue: { send: async () => {} } },
    agent.id,
    { moduleCode },
  );
  return { agentId: agent.id, deploymentId: deployment.id };
}

async function deleteAgent(o: Owner, agentId: string, deletedAgoMs: number) {
  const res = await call("DELETE", `/v1/agents/${agentId}`, { headers: o.headers });
  expect(res.status).toBeLessThan(300);
  await env.DB.prepare("UPDATE agents SET deleted_at = ? WHERE id = ?")
    .bind(Date.now() - deletedAgoMs, agentId)
    .run();
}

async function stateOf(agentId: string, deploymentId: string) {
  const secrets = await env.DB.prepare("SELECT COUNT(*) AS n FROM agent_secrets WHERE agent_id = ?")
    .bind(agentId)
    .first<{ n: number }>();
  const dep = await env.DB.prepare(
    `SELECT d.secrets_snapshot_ciphertext AS snapshot, a.module_code AS code, a.purged_at AS artifactPurgedAt
     FROM deployments d JOIN deployment_artifacts a ON a.id = d.artifact_id WHERE d.id = ?`,
  )
    .bind(deploymentId)
    .first<{ snapshot: string | null; code: string; artifactPurgedAt: number | null }>();
  const agent = await env.DB.prepare("SELECT deleted_at, purged_at FROM agents WHERE id = ?")
    .bind(agentId)
    .first<{ deleted_at: number | null; purged_at: number | null }>();
  return { secrets: secrets?.n, ...dep, agent };
}

async function runCron() {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime: Date.now(), cron: "*/5 * * * *" }), env, ctx);
  await waitOnExecutionContext(ctx);
}

describe("purge of deleted agents", () => {
  it("purges an agent deleted past the grace period, keeps one within it and leaves a live agent alone", async () => {
    const o = await owner();
    const past = await agentWithSecrets(o);
    const recent = await agentWithSecrets(o);
    const live = await agentWithSecrets(o);
    for (const agentId of [past.agentId, live.agentId]) {
      const res = await call("PUT", `/v1/agents/${agentId}/egress`, {
        headers: o.headers,
        body: { mode: "allowlist", allow: ["api.example.com"] },
      });
      expect(res.status).toBe(200);
    }
    await deleteAgent(o, past.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    await deleteAgent(o, recent.agentId, DELETED_AGENT_GRACE_MS - DAY_MS);
    const before = {
      recent: await stateOf(recent.agentId, recent.deploymentId),
      live: await stateOf(live.agentId, live.deploymentId),
    };
    expect(before.recent).toMatchObject({ secrets: 2, artifactPurgedAt: null });
    expect(before.recent.snapshot).toBeTruthy();

    await runCron();

    const purged = await stateOf(past.agentId, past.deploymentId);
    expect(purged).toMatchObject({ secrets: 0, snapshot: null, code: "" });
    expect(purged.artifactPurgedAt).not.toBeNull();
    expect(purged.agent?.purged_at).not.toBeNull();
    // The tombstone and the deployment row stay (usage and audit history refer to them).
    expect(purged.agent?.deleted_at).not.toBeNull();

    expect(await stateOf(recent.agentId, recent.deploymentId)).toEqual(before.recent);
    expect(await stateOf(live.agentId, live.deploymentId)).toEqual(before.live);
    // The live agent still lists its secrets.
    const listed = await call("GET", `/v1/agents/${live.agentId}/secrets`, { headers: o.headers });
    expect(JSON.stringify(await listed.json())).toContain("API_KEY");
    // The purged agent's egress policy is gone; the live agent's stays.
    const policies = await env.DB.prepare("SELECT agent_id FROM agent_egress_policies WHERE agent_id IN (?, ?)")
      .bind(past.agentId, live.agentId)
      .all<{ agent_id: string }>();
    expect(policies.results.map((r) => r.agent_id)).toEqual([live.agentId]);
  });

  it("keeps an artifact another agent's deployment still uses, and restores purged code when it is deployed again", async () => {
    const o = await owner();
    const shared = modules.fixedAnswer(`shared-${crypto.randomUUID()}`);
    const gone = await agentWithSecrets(o, shared);
    const stays = await agentWithSecrets(o, shared);
    await deleteAgent(o, gone.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    await purgeDeletedAgents(db);
    const gonePurged = await stateOf(gone.agentId, gone.deploymentId);
    expect(gonePurged).toMatchObject({ secrets: 0, snapshot: null, artifactPurgedAt: null });
    expect((await stateOf(stays.agentId, stays.deploymentId)).artifactPurgedAt).toBeNull();

    // Once its last user is purged too, the code goes; deploying the same bytes brings it back.
    await deleteAgent(o, stays.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    await purgeDeletedAgents(db);
    expect((await stateOf(stays.agentId, stays.deploymentId)).artifactPurgedAt).not.toBeNull();
    const again = await agentWithSecrets(o, shared);
    expect(await stateOf(again.agentId, again.deploymentId)).toMatchObject({ artifactPurgedAt: null });
  });

  it("removes a purged bundle from R2 once no live artifact of anyone names it, and a redeploy stores it again", async () => {
    const code = modules.fixedAnswer(`object-${crypto.randomUUID()}`);
    const a = await owner();
    const b = await owner();
    const ofA = await agentWithSecrets(a, code);
    const ofB = await agentWithSecrets(b, code); // another user, the same bytes: the same object
    const keyOf = async (deploymentId: string) =>
      (
        await env.DB.prepare(
          "SELECT a.object_key AS key FROM deployments d JOIN deployment_artifacts a ON a.id = d.artifact_id WHERE d.id = ?",
        )
          .bind(deploymentId)
          .first<{ key: string }>()
      )?.key as string;
    const key = await keyOf(ofA.deploymentId);
    expect(key).toBe(await keyOf(ofB.deploymentId));
    expect(await env.ARTIFACTS.head(key)).not.toBeNull();

    await deleteAgent(a, ofA.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    await runCron();
    // A's artifact is purged, but B still runs the same bundle: the object stays.
    expect((await stateOf(ofA.agentId, ofA.deploymentId)).artifactPurgedAt).not.toBeNull();
    expect(await env.ARTIFACTS.head(key)).not.toBeNull();

    await deleteAgent(b, ofB.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    await runCron();
    expect(await env.ARTIFACTS.head(key)).toBeNull();

    // Deploying the same bytes again stores the object again, and the deployment can be run.
    const again = await agentWithSecrets(a, code);
    expect(await keyOf(again.deploymentId)).toBe(key);
    expect(await env.ARTIFACTS.head(key)).not.toBeNull();
  });

  it("puts a removed bundle back when a deploy of the same bytes revives its artifact during the removal", async () => {
    const o = await owner();
    const gone = await agentWithSecrets(o, modules.fixedAnswer(`race-${crypto.randomUUID()}`));
    await deleteAgent(o, gone.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    await purgeDeletedAgents(db);
    const row = await env.DB.prepare(
      "SELECT a.id, a.object_key AS key FROM deployments d JOIN deployment_artifacts a ON a.id = d.artifact_id WHERE d.id = ?",
    )
      .bind(gone.deploymentId)
      .first<{ id: string; key: string }>();
    // The deploy found the object before the delete and writes its artifact row right after it.
    const racing = {
      get: (k: string) => env.ARTIFACTS.get(k),
      head: (k: string) => env.ARTIFACTS.head(k),
      put: (k: string, v: ArrayBuffer, o?: R2PutOptions) => env.ARTIFACTS.put(k, v, o),
      delete: async (k: string) => {
        await env.ARTIFACTS.delete(k);
        await env.DB.prepare("UPDATE deployment_artifacts SET purged_at = NULL WHERE id = ?").bind(row?.id).run();
      },
    } as unknown as R2Bucket;
    const report = await removePurgedBundles({ db, artifacts: racing });
    expect(report.restored).toBe(1);
    const restored = await env.ARTIFACTS.get(row?.key as string);
    expect(restored).not.toBeNull();
    expect(JSON.parse((await restored?.text()) ?? "{}").modules).toBeDefined();
  });

  it("stores the bundle again when its object is removed between a deploy's check and its row", async () => {
    const o = await owner();
    const code = modules.fixedAnswer(`reput-${crypto.randomUUID()}`);
    const first = await agentWithSecrets(o, code);
    const key = (
      await env.DB.prepare(
        "SELECT a.object_key AS key FROM deployments d JOIN deployment_artifacts a ON a.id = d.artifact_id WHERE d.id = ?",
      )
        .bind(first.deploymentId)
        .first<{ key: string }>()
    )?.key as string;
    // The deploy's first check finds the object; the cron deletes it right after.
    let checks = 0;
    const racing = {
      get: (k: string) => env.ARTIFACTS.get(k),
      put: (k: string, v: string, opts?: R2PutOptions) => env.ARTIFACTS.put(k, v, opts),
      delete: (k: string) => env.ARTIFACTS.delete(k),
      head: async (k: string) => {
        const found = await env.ARTIFACTS.head(k);
        if (checks++ === 0) await env.ARTIFACTS.delete(k);
        return found;
      },
    } as unknown as R2Bucket;
    const agent = await createAgent(o.headers);
    const { keyring, tierLimits } = await getConfig(env);
    await createDeployment(
      { db, userId: o.userId, keyring, tierLimits, artifacts: racing, queue: { send: async () => {} } },
      agent.id,
      { moduleCode: code },
    );
    expect(checks).toBe(2);
    expect(await env.ARTIFACTS.head(key)).not.toBeNull();
  });

  it("is bounded per run: rows per statement and statements per run, and finishes over later runs", async () => {
    const o = await owner();
    const many = [];
    for (let i = 0; i < 4; i++) many.push(await agentWithSecrets(o));
    for (const a of many) await deleteAgent(o, a.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    const first = await purgeDeletedAgents(db, { agentsPerBatch: 1, rowsPerStatement: 1, maxStatements: 8 });
    expect(first.statements).toBeLessThanOrEqual(8);
    expect(first.complete).toBe(false);
    let runs = 1;
    for (;;) {
      const next = await purgeDeletedAgents(db, { agentsPerBatch: 1, rowsPerStatement: 1, maxStatements: 8 });
      expect(next.statements).toBeLessThanOrEqual(8);
      runs++;
      if (next.complete) break;
      expect(runs).toBeLessThan(20);
    }
    for (const a of many)
      expect(await stateOf(a.agentId, a.deploymentId)).toMatchObject({ secrets: 0, snapshot: null });
  });

  it("runs every statement on an index (EXPLAIN QUERY PLAN)", async () => {
    const o = await owner();
    const a = await agentWithSecrets(o);
    await deleteAgent(o, a.agentId, DELETED_AGENT_GRACE_MS + DAY_MS);
    // Capture the statements with their parameters by running through a recording binding.
    const statements: Array<{ sql: string; params: unknown[] }> = [];
    const capturing = {
      prepare: (sql: string) => {
        const real = env.DB.prepare(sql);
        const entry = { sql, params: [] as unknown[] };
        statements.push(entry);
        const wrap = (stmt: D1PreparedStatement): D1PreparedStatement =>
          new Proxy(stmt, {
            get(target, prop) {
              if (prop === "bind")
                return (...params: unknown[]) => {
                  entry.params = params;
                  return wrap(target.bind(...params));
                };
              const value = Reflect.get(target, prop);
              return typeof value === "function" ? value.bind(target) : value;
            },
          });
        return wrap(real);
      },
      batch: (stmts: D1PreparedStatement[]) => env.DB.batch(stmts),
    } as unknown as D1Database;
    const report = await purgeDeletedAgents(createDb(capturing));
    expect(report.agents).toBeGreaterThanOrEqual(1);
    expect(statements.length).toBeGreaterThanOrEqual(5);
    const plans: string[] = [];
    for (const s of statements) {
      const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${s.sql}`)
        .bind(...s.params)
        .all<{ detail: string }>();
      const details = plan.results.map((r) => r.detail);
      plans.push(`${s.sql}\n  ${details.join("\n  ")}`);
      // A full scan is "SCAN <table>" without "USING … INDEX"; the purge's tables are all big.
      for (const d of details) expect(d, `${s.sql}\n${details.join("\n")}`).not.toMatch(/^SCAN (?!.*USING)/);
    }
    console.log(plans.join("\n\n"));
  });
});
