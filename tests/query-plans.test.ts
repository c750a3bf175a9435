// The queries that serve one agent use that agent's index whatever the planner's statistics say:
// EXPLAIN QUERY PLAN of the exact SQL each service runs, before any ANALYZE and after skewed data
// (one user with many rows on another agent, many users with one row each) has made the user
// index look attractive. Real D1.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { listDeploymentsQuery } from "../src/services/deployments/deployments";
import { recentEventsQuery } from "../src/services/metering/recent-events";
import { RECONCILE_STEP_SQL } from "../src/services/metering/reconcile";
import { seedAgent, seedDeployment, testDb } from "./helpers/namespace";

const db = testDb();

async function plan(query: { toSQL(): { sql: string; params: unknown[] } }): Promise<string[]> {
  const { sql, params } = query.toSQL();
  const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .bind(...params)
    .all<{ detail: string }>();
  return results.map((r) => r.detail);
}

const COUNT = (n: number) => `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n})`;

/** `n` metrics events of (user, agent), ids prefixed by `tag`. */
async function events(tag: string, userId: string | null, agentId: string, n: number) {
  await env.DB.prepare(
    `${COUNT(n)} INSERT INTO metrics_events (id, user_id, agent_id, deployment_id, source, dedupe_key, runtime_provider,
       kind, ts, received_at)
     SELECT ?1 || i, COALESCE(?2, ?1 || 'usr' || i), ?3, 'dep_plan', 'gateway', ?1 || i, 'cloudflare', 'invoke',
       1700000000000 + i, 1700000000000 + i FROM n`,
  )
    .bind(tag, userId, agentId)
    .run();
}

describe("query plans of per-agent reads", () => {
  it("metrics/recent and list deployments read through the agent's index, with or without statistics", async () => {
    const quiet = await seedAgent(db);
    const busy = await seedAgent(db);
    const shared = await seedAgent(db);
    const recent = (sinceMs?: number) =>
      recentEventsQuery({ db, userId: quiet.userId }, { agentId: quiet.agentId, limit: 50, sinceMs });
    const deps = (opts: { status?: "failed"; includeInactive: boolean }) =>
      listDeploymentsQuery({ db, userId: quiet.userId }, quiet.agentId, { limit: 20, ...opts });
    const queries = () => [
      recent(),
      recent(1700000000000),
      deps({ includeInactive: true }),
      deps({ includeInactive: false }),
      deps({ status: "failed", includeInactive: true }),
    ];
    const expectAgentIndex = async () => {
      for (const q of queries()) {
        const lines = await plan(q);
        const table = q.toSQL().sql.includes("metrics_events") ? "metrics_events" : "deployments";
        const index = table === "metrics_events" ? "metrics_events_agent_ts_idx" : "deployments_agent_created_idx";
        expect(lines.join(" | "), q.toSQL().sql).toContain(`SEARCH ${table} USING INDEX ${index} (agent_id=?`);
      }
    };

    await expectAgentIndex();

    // The quiet agent's user has many events and deployments on another agent, while a thousand
    // other users have one event each on a shared agent: per user, rows look few; per agent, many.
    await events("evq_", quiet.userId, quiet.agentId, 1);
    await events("evb_", quiet.userId, busy.agentId, 1000);
    await events("evs_", null, shared.agentId, 1000);
    await env.DB.prepare(
      `${COUNT(300)} INSERT INTO users (id, auth_subject, created_at, updated_at)
       SELECT 'usr_plan' || i, 'sub-plan-' || i, 0, 0 FROM n`,
    ).run();
    await seedDeployment(db, quiet, { status: "active", at: Date.now() });
    for (const [tag, userExpr, agentId] of [
      ["dpb_", "?2", busy.agentId],
      ["dps_", "'usr_plan' || i", shared.agentId],
    ] as const) {
      await env.DB.prepare(
        `${COUNT(300)} INSERT INTO deployments (id, user_id, agent_id, status, runtime_provider, compatibility_date,
           invoke_path, main_module_name, artifact_id, module_sha256, telemetry_secret_ciphertext, script_name,
           created_at, updated_at)
         SELECT ?1 || i, ${userExpr}, ?3, CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'inactive' END, 'cloudflare',
           '2026-08-01', '/invoke', 'index.mjs', ?4, 'sha', 'v1.x', ?1 || 'script' || i, i, i FROM n`,
      )
        .bind(tag, quiet.userId, agentId, quiet.artifactId)
        .run();
    }
    await env.DB.prepare("ANALYZE").run();
    const { results: stats } = await env.DB.prepare("SELECT idx, stat FROM sqlite_stat1").all<{ idx: string }>();
    expect(stats.map((s) => s.idx)).toContain("metrics_events_user_ts_idx");

    await expectAgentIndex();
  });
});

describe("query plans of the usage reconciliation", () => {
  it("reads events by rowid range and counters by key: no statement scans a table", async () => {
    const params = [10_000, 500, null, null, null, null, null, null, Date.now()];
    const plans: string[] = [];
    for (const statement of RECONCILE_STEP_SQL) {
      const highest = Math.max(0, ...[...statement.matchAll(/\?(\d+)/g)].map((m) => Number(m[1])));
      const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${statement}`)
        .bind(...params.slice(0, highest))
        .all<{ detail: string }>();
      const lines = results.map((r) => r.detail);
      plans.push(lines.join(" | "));
      // The only scans allowed: of a bounded subquery, or of the partial index of dirty totals
      // (LIMIT-ed); never of a table or a whole index of events or counters.
      for (const line of lines.filter((l) => l.startsWith("SCAN "))) {
        expect(line, statement).toMatch(
          /^SCAN (\(subquery-\d+\)|k|usage_verified_totals USING (COVERING )?INDEX usage_verified_totals_dirty_idx)$/,
        );
      }
    }
    const all = plans.join("\n");
    expect(all).toContain("SEARCH metrics_events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)");
    expect(all).toContain(
      "SEARCH b USING INDEX billing_usage_user_period_agent_uq ((user_id,period_key,agent_id)>(?,?,?))",
    );
  });
});
