// GET /v1/agents/:agentId/stats: numbers that match the invocations made (through the real usage
// queue and D1), the pre-aggregated buckets (exactly once per event, windows), and the refusals.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { DURATION_BOUNDS_MS } from "../src/db/schema/agent-stats";
import worker from "../src/index";
import { newId } from "../src/lib/ids";
import type { MetricsEvent } from "../src/services/metering/event";
import { recordEvents, recordEventsStatements } from "../src/services/metering/record-events";
import { getAgentStats, percentileFromHistogram } from "../src/services/stats/agent-stats";
import { HOUR_MS } from "../src/services/stats/aggregate";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { insertUserAndAgent } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";
import { gatewayEvent } from "./helpers/metrics-events";
import { waitFor } from "./helpers/wait";

const db = createDb(env.DB);

// Answers "boom" by throwing (the caller sees 502 upstream_exception), anything else after a pause.
const FLAKY = `export default {
  async fetch(req) {
    const { messages } = await req.json();
    const text = messages.at(-1).content;
    if (text === "boom") throw new Error("boom");
    await new Promise((r) => setTimeout(r, 20));
    return Response.json({ output: { text } });
  },
};`;

type Event = {
  source: string;
  kind: string;
  deploymentId: string;
  durationMs: number | null;
  status: string | null;
  errorCode: string | null;
  inputTokens: number | null;
  outputTokens: number | null;
};

/** The exact percentile of integer durations, as the rank definition the histogram uses. */
function exactPercentile(sorted: number[], p: number): number {
  return sorted[Math.max(1, Math.ceil(p * sorted.length)) - 1] as number;
}

function bucketOf(ms: number): number {
  const i = DURATION_BOUNDS_MS.findIndex((bound) => ms < bound);
  return i === -1 ? DURATION_BOUNDS_MS.length : i;
}

describe("GET /v1/agents/:agentId/stats", () => {
  it("matches the invocations made, per deployment and in total, through the usage queue", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const v1 = await deployAndActivate(headers, agent.id); // the template: echoes, reports tokens
    for (const text of ["one", "two words", "three more words"]) {
      expect((await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage(text) })).status).toBe(200);
    }
    const v2 = await deployAndActivate(headers, agent.id, { moduleCode: FLAKY });
    const statuses: number[] = [];
    for (const text of ["a", "boom", "b", "boom", "c"]) {
      statuses.push((await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage(text) })).status);
    }
    expect(statuses).toEqual([200, 502, 200, 502, 200]);

    // The recorded events (the metering already tested elsewhere) are the truth the stats must match.
    const events = await waitFor(
      async () => {
        const res = await call("GET", `/v1/metrics/recent?agentId=${agent.id}&limit=200`, { headers });
        const list = (await json(res)).events as Event[];
        const invocations = list.filter((e) => e.source === "gateway" && e.kind === "invoke");
        const telemetry = list.filter((e) => e.source === "telemetry");
        return invocations.length === 8 && telemetry.length === 3 ? list : undefined;
      },
      { timeoutMs: 15_000, what: "8 invocations and 3 telemetry events metered" },
    );
    const invocations = events.filter((e) => e.source === "gateway" && e.kind === "invoke");
    const telemetry = events.filter((e) => e.source === "telemetry");

    const stats = await waitFor(
      async () => {
        const res = await call("GET", `/v1/agents/${agent.id}/stats?window=1h`, { headers });
        expect(res.status).toBe(200);
        const body = (await json(res)).stats;
        return body.totals.invocations === 8 && body.totals.tokens.input > 0 ? body : undefined;
      },
      { timeoutMs: 5_000, what: "stats to show the metered events" },
    );

    expect(stats).toMatchObject({ agentId: agent.id, window: "1h", bucketMs: 60_000 });
    expect(stats.totals).toMatchObject({
      invocations: 8,
      errors: 2,
      errorRate: 0.25,
      errorsByCode: [{ code: "upstream_exception", count: 2 }],
      tokens: {
        input: telemetry.reduce((s, e) => s + (e.inputTokens ?? 0), 0),
        output: telemetry.reduce((s, e) => s + (e.outputTokens ?? 0), 0),
      },
      modelTokens: { input: 0, output: 0 },
    });
    expect(stats.totals.tokens.input).toBe(1 + 2 + 3); // the template counts words

    const byDeployment = Object.fromEntries(
      stats.deployments.map((d: { deploymentId: string }) => [d.deploymentId, d]),
    );
    expect(Object.keys(byDeployment).sort()).toEqual([v1.id, v2.id].sort());
    expect(byDeployment[v1.id]).toMatchObject({ invocations: 3, errors: 0, errorsByCode: [], errorRate: 0 });
    expect(byDeployment[v2.id]).toMatchObject({
      invocations: 5,
      errors: 2,
      errorRate: 0.4,
      errorsByCode: [{ code: "upstream_exception", count: 2 }],
      tokens: { input: 0, output: 0 },
    });
    // The first deployment listed is the most invoked.
    expect(stats.deployments[0].deploymentId).toBe(v2.id);

    // Durations: min, max and mean exact; each percentile in the same histogram bucket as the exact one.
    for (const [key, subset] of [
      ["totals", invocations],
      [v2.id, invocations.filter((e) => e.deploymentId === v2.id)],
    ] as const) {
      const got = key === "totals" ? stats.totals.durationMs : byDeployment[key].durationMs;
      const sorted = subset.map((e) => e.durationMs as number).sort((a, b) => a - b);
      expect(got.min).toBe(sorted[0]);
      expect(got.max).toBe(sorted.at(-1));
      expect(got.mean).toBe(Math.round(sorted.reduce((a, b) => a + b, 0) / sorted.length));
      for (const [name, p] of [
        ["p50", 0.5],
        ["p95", 0.95],
        ["p99", 0.99],
      ] as const) {
        expect(bucketOf(got[name]), `${key} ${name}`).toBe(bucketOf(exactPercentile(sorted, p)));
        expect(got[name]).toBeGreaterThanOrEqual(got.min);
        expect(got[name]).toBeLessThanOrEqual(got.max);
      }
    }

    // The longer windows hold the same invocations (all within the current hour or the one before).
    for (const window of ["24h", "7d"]) {
      const res = await call("GET", `/v1/agents/${agent.id}/stats?window=${window}`, { headers });
      const body = (await json(res)).stats;
      expect(body).toMatchObject({ window, bucketMs: 3_600_000 });
      expect(body.totals).toMatchObject({ invocations: 8, errors: 2, tokens: stats.totals.tokens });
    }
  });

  it("is all zeros for an agent never invoked, and defaults to 24h", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const res = await call("GET", `/v1/agents/${agent.id}/stats`, { headers });
    expect(res.status).toBe(200);
    const { stats } = await json(res);
    expect(stats).toMatchObject({ window: "24h", deployments: [] });
    expect(stats.totals).toEqual({
      invocations: 0,
      errors: 0,
      errorRate: 0,
      errorsByCode: [],
      durationMs: { mean: null, min: null, max: null, p50: null, p95: null, p99: null },
      tokens: { input: 0, output: 0 },
      modelTokens: { input: 0, output: 0 },
    });
  });

  it("refuses a window it does not know with 400, and another user's agent with 404", async () => {
    const owner = await newUser();
    const stranger = await newUser("stranger");
    const agent = await createAgent(owner.headers);
    for (const bad of ["2h", "", "1H", "24h&window=7d"]) {
      const problem = await expectProblem(
        await call("GET", `/v1/agents/${agent.id}/stats?window=${bad}`, { headers: owner.headers }),
        400,
        "validation_failed",
      );
      expect(JSON.stringify(problem.errors)).toContain("query.window");
    }
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/stats`, { headers: stranger.headers }),
      404,
      "not_found",
    );
    await expectProblem(await call("GET", `/v1/agents/${agent.id}/stats`), 401, "unauthenticated");
  });
});

describe("the stats buckets", () => {
  function event(userId: string, agentId: string, fields: Partial<MetricsEvent>): MetricsEvent {
    return gatewayEvent(userId, agentId, { deploymentId: "dep_stats", bytesIn: 1, bytesOut: 1, ...fields });
  }

  it("count a redelivered event once, leave smoke tests out, and keep each window to its buckets", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    const now = Date.now();
    const first = event(userId, agentId, { durationMs: 7 });
    await recordEvents(db, [first]);
    await recordEvents(db, [
      first, // redelivered
      event(userId, agentId, { durationMs: 300, status: "error", errorCode: "upstream_timeout" }),
      event(userId, agentId, { kind: "smoke_test", durationMs: 9999 }),
      event(userId, agentId, { kind: "preview", durationMs: 40 }),
      event(userId, agentId, { source: "egress", inputTokens: 11, outputTokens: 13, durationMs: 5 }),
      event(userId, agentId, { ts: now - 2 * HOUR_MS, durationMs: 1 }), // outside 1h, inside 24h
      event(userId, agentId, { ts: now - 8 * 24 * HOUR_MS, durationMs: 1 }), // outside every window
    ]);
    const deps = { db, userId };
    const hour = await getAgentStats(deps, agentId, "1h", now);
    expect(hour.totals).toMatchObject({
      invocations: 3,
      errors: 1,
      errorsByCode: [{ code: "upstream_timeout", count: 1 }],
      durationMs: { min: 7, max: 300, mean: Math.round((7 + 300 + 40) / 3) },
      modelTokens: { input: 11, output: 13 },
    });
    expect((await getAgentStats(deps, agentId, "24h", now)).totals).toMatchObject({
      invocations: 4,
      durationMs: { min: 1 },
    });
    expect((await getAgentStats(deps, agentId, "7d", now)).totals.invocations).toBe(4);
    // Another user asking for this agent id gets nothing of it.
    await expect(getAgentStats({ db, userId: newId("user") }, agentId, "7d", now)).rejects.toMatchObject({
      code: "not_found",
    });
  });

  it("cost one statement per metering batch, two when the batch holds a failed invocation", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    const ok = Array.from({ length: 100 }, () => event(userId, agentId, {}));
    expect(recordEventsStatements(env.DB, ok)).toHaveLength(2 + 1);
    const failed = [...ok.slice(1), event(userId, agentId, { status: "error", errorCode: "upstream_timeout" })];
    expect(recordEventsStatements(env.DB, failed)).toHaveLength(2 + 2);
  });

  it("reads percentiles within one bucket of the exact value", () => {
    const durations = Array.from({ length: 1000 }, (_, i) => 1 + ((i * 7919) % 2000));
    const histogram = new Array(DURATION_BOUNDS_MS.length + 1).fill(0);
    for (const d of durations) histogram[bucketOf(d)] += 1;
    const sorted = [...durations].sort((a, b) => a - b);
    for (const p of [0.5, 0.95, 0.99]) {
      const got = percentileFromHistogram(histogram, p, sorted[0] as number, sorted.at(-1) as number) as number;
      const exact = exactPercentile(sorted, p);
      expect(bucketOf(got)).toBe(bucketOf(exact));
      expect(Math.abs(got - exact) / exact).toBeLessThan(0.42);
    }
    expect(
      percentileFromHistogram(
        histogram.map(() => 0),
        0.5,
        null,
        null,
      ),
    ).toBeNull();
    // One invocation: every percentile is its duration.
    const single = new Array(DURATION_BOUNDS_MS.length + 1).fill(0);
    single[bucketOf(37)] = 1;
    expect(percentileFromHistogram(single, 0.99, 37, 37)).toBe(37);
  });

  it("are read and expired through their indexes, never by scanning (EXPLAIN QUERY PLAN)", async () => {
    const plan = async (sql: string, params: unknown[]) => {
      const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .bind(...params)
        .all<{ detail: string }>();
      return results.map((r) => r.detail).join("\n");
    };
    const { STATS_SQL, ERRORS_SQL } = await import("../src/services/stats/agent-stats");
    const params = ["agt_x", "usr_x", 60_000, Date.now()];
    expect(await plan(STATS_SQL, params)).toMatch(
      /SEARCH agent_stats USING INDEX agent_stats_bucket_uq \(agent_id=\? AND bucket_ms=\? AND bucket_start>\?\)/,
    );
    const { expireSql } = await import("../src/services/stats/retention");
    for (const table of ["agent_stats", "agent_stats_errors"]) {
      const expiry = await plan(expireSql(table), [60_000, Date.now(), 5000]);
      expect(expiry).toMatch(new RegExp(`SEARCH ${table} USING (COVERING )?INDEX ${table}_expiry_idx`));
      expect(expiry).not.toMatch(new RegExp(`SCAN ${table}\\b`));
    }
    expect(await plan(ERRORS_SQL, params)).toMatch(
      /SEARCH agent_stats_errors USING INDEX agent_stats_errors_bucket_uq \(agent_id=\? AND bucket_ms=\? AND bucket_start>\?\)/,
    );
  });

  it("expire in the cron once no window reads them (minute buckets after 2 h, hour buckets after 8 days)", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    const now = Date.now();
    await recordEvents(db, [
      event(userId, agentId, { ts: now - 3 * HOUR_MS, status: "error", errorCode: "x" }),
      event(userId, agentId, { ts: now - 9 * 24 * HOUR_MS, status: "error", errorCode: "x" }),
      event(userId, agentId, { ts: now }),
    ]);
    const buckets = async () =>
      (
        await env.DB.prepare(
          `SELECT bucket_ms AS ms, COUNT(*) AS n FROM (SELECT bucket_ms FROM agent_stats WHERE agent_id = ?1
             UNION ALL SELECT bucket_ms FROM agent_stats_errors WHERE agent_id = ?1) GROUP BY bucket_ms ORDER BY bucket_ms`,
        )
          .bind(agentId)
          .all<{ ms: number; n: number }>()
      ).results;
    expect(await buckets()).toEqual([
      { ms: 60_000, n: 3 + 2 },
      { ms: HOUR_MS, n: 3 + 2 },
    ]);
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: now, cron: "*/5 * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    // Left: the current minute; the current hour and the hour 3 h ago (stats and errors).
    expect(await buckets()).toEqual([
      { ms: 60_000, n: 1 },
      { ms: HOUR_MS, n: 3 },
    ]);
  });
});
