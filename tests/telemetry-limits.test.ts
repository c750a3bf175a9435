// Telemetry limits (issue 15, defect 4): bounded numeric fields, the per-deployment rate limit on
// both doors, the per-period event quota, the negative cache of unknown deployment ids, and the
// retention of metrics_events by the cron.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { eq, inArray, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { utf8 } from "../src/crypto/encoding";
import { createDb } from "../src/db/client";
import { billingUsage, metricsEvents, subscriptions } from "../src/db/schema";
import { getConfig } from "../src/env";
import worker from "../src/index";
import { newId } from "../src/lib/ids";
import { EXPIRE_ALL_SQL, EXPIRE_TIER_SQL, expireMetricsEvents } from "../src/services/metering/retention";
import { ingestTelemetryReport } from "../src/services/telemetry/ingest";
import { DEFAULT_TIER_LIMITS, parseTierLimits } from "../src/services/usage/tiers";
import { callWithEnv } from "./helpers/app";
import { recordingD1 } from "./helpers/d1-faults";
import { type SeededDeployment, seedDeployment, signTelemetry, telemetryEvent } from "./helpers/deployments";
import { insertUserAndAgent } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";
import { drainUsageQueue, storedTelemetryCount } from "./helpers/usage-queue";

const DAY = 24 * 60 * 60 * 1000;
const db = createDb(env.DB);

async function signedHeaders(dep: SeededDeployment, body: string, deploymentId = dep.deploymentId) {
  return {
    "content-type": "application/json",
    "x-telemetry-signature": await signTelemetry(dep.secret, body),
    "x-telemetry-deployment-id": deploymentId,
  };
}

async function report(dep: SeededDeployment, body: string): Promise<Response> {
  return call("POST", "/v1/telemetry/report", { headers: await signedHeaders(dep, body), rawBody: body });
}

const batchOf = (dep: SeededDeployment, n: number) =>
  JSON.stringify({ events: Array.from({ length: n }, () => telemetryEvent(dep)) });

describe("bounded numeric fields", () => {
  it("refuses absurd token counts and durations with 400 naming the field, and accepts the bounds", async () => {
    const dep = await seedDeployment();
    const tokens = await expectProblem(
      await report(dep, JSON.stringify(telemetryEvent(dep, { usage: { inputTokens: 4e12, outputTokens: 5 } }))),
      400,
      "telemetry_rejected",
    );
    expect(tokens.check).toBe("event_schema");
    expect(tokens.errors).toEqual([
      { location: "body.usage.inputTokens", message: "must be at most 10,000,000 tokens per event" },
    ]);

    const duration = await expectProblem(
      await report(
        dep,
        JSON.stringify({ events: [telemetryEvent(dep), telemetryEvent(dep, { durationMs: 25 * 3600_000 })] }),
      ),
      400,
      "telemetry_rejected",
    );
    expect(duration.check).toBe("event_schema");
    expect(duration.errors).toEqual([
      { location: "body.events.1.durationMs", message: "must be at most 86,400,000 ms (24 h)" },
    ]);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(0);

    const atBounds = telemetryEvent(dep, {
      durationMs: 24 * 3600_000,
      usage: { inputTokens: 10_000_000, outputTokens: 10_000_000 },
    });
    expect(await json(await report(dep, JSON.stringify(atBounds)))).toEqual({ accepted: 1, queued: true });
  });
});

describe("per-deployment rate limit", () => {
  const perMinute = DEFAULT_TIER_LIMITS.free.telemetryEventsPerMinute;
  const fullBatches = perMinute / 100;

  it("HTTP: a burst beyond the tier's events per minute gets 429 rate_limited with Retry-After", async () => {
    const dep = await seedDeployment();
    for (let i = 0; i < fullBatches; i++) {
      expect(await json(await report(dep, batchOf(dep, 100)))).toEqual({ accepted: 100, queued: true });
    }
    const res = await report(dep, batchOf(dep, 100));
    const problem = await expectProblem(res, 429, "rate_limited");
    expect(problem).toMatchObject({
      check: "rate_limit",
      limit: "telemetryEventsPerMinute",
      tier: "free",
      max: perMinute,
    });
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(perMinute);

    // The limit is per deployment: another deployment of the same user is not affected.
    const other = await seedDeployment({ owner: dep.owner });
    expect((await report(other, batchOf(other, 100))).status).toBe(202);
  });

  it("RPC: the TelemetrySink refuses the same burst with a rate_limited[rate_limit] error", async () => {
    const dep = await seedDeployment();
    const sink = exports.TelemetrySink({
      props: { userId: dep.userId, agentId: dep.agentId, deploymentId: dep.deploymentId },
    });
    const input = async () => {
      const body = batchOf(dep, 100);
      return { body, signature: await signTelemetry(dep.secret, body), deploymentId: dep.deploymentId };
    };
    for (let i = 0; i < fullBatches; i++) {
      expect(await sink.report(await input())).toEqual({ accepted: 100, queued: true });
    }
    let message = "";
    try {
      await sink.report(await input());
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^rate_limited\[rate_limit\]: the free plan accepts 600 telemetry events per minute/);
    expect(message).toMatch(/retry after \d+ s/);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(perMinute);
  });
});

describe("per-period event quota", () => {
  const limits = JSON.stringify({ free: { telemetryEventsPerPeriod: 5 } });
  const send = async (dep: SeededDeployment, body: string) =>
    callWithEnv({ TIER_LIMITS: limits }, "POST", "/v1/telemetry/report", {
      headers: await signedHeaders(dep, body),
      rawBody: body,
    });

  it("refuses a report that would exceed the user's events per month with 429 naming the limit", async () => {
    const dep = await seedDeployment();
    const first = [telemetryEvent(dep), telemetryEvent(dep)];
    expect(await json(await send(dep, JSON.stringify({ events: first })))).toEqual({ accepted: 2, queued: true });
    // (A replay would count here too: tests/telemetry-queue.test.ts, "duplicates".)

    // Another deployment of the same user shares the user's quota: 2 + 4 > 5, refused whole.
    const other = await seedDeployment({ owner: dep.owner });
    const res = await send(other, batchOf(other, 4));
    const problem = await expectProblem(res, 429, "usage_limit_exceeded");
    expect(problem).toMatchObject({
      check: "event_quota",
      limit: "telemetryEventsPerPeriod",
      tier: "free",
      max: 5,
      current: 2,
    });
    expect(problem.detail).toContain("5 telemetry events per month");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);

    expect((await send(other, batchOf(other, 3))).status).toBe(202);
    await expectProblem(await send(dep, batchOf(dep, 1)), 429, "usage_limit_exceeded");

    // The count lives in billing_usage (what other isolates read), and outlives the events.
    await drainUsageQueue();
    const [row] = await db
      .select({ n: sql<number>`sum(${billingUsage.telemetryEvents})` })
      .from(billingUsage)
      .where(eq(billingUsage.userId, dep.userId));
    expect(Number(row?.n)).toBe(5);
  });
});

describe("negative cache of unknown deployment ids", () => {
  it("reads D1 once for an unknown id, answers it like a wrong signature, and forgets it after 30 s", async () => {
    const { keyring, tierLimits } = await getConfig(env);
    const deploymentId = newId("deployment");
    const ghost = await seedDeployment();
    const early = { ...ghost, deploymentId };
    const body = JSON.stringify(telemetryEvent(early));
    const signed = { body: utf8.encode(body), signature: await signTelemetry(ghost.secret, body), deploymentId };
    const d1 = recordingD1();
    const recorded = createDb(d1);
    const now = Date.now();
    for (let i = 0; i < 3; i++) {
      await expect(
        ingestTelemetryReport({ db: recorded, keyring, tierLimits, usageQueue: env.USAGE_QUEUE, now: now + i }, signed),
      ).rejects.toMatchObject({ code: "invalid_telemetry_signature", extra: { check: "signature_mismatch" } });
    }
    expect(d1.statements.filter((s) => /from "deployments"/i.test(s))).toHaveLength(1);

    // Over HTTP the remembered unknown id answers exactly like a wrong signature.
    const unknown = await expectProblem(
      await call("POST", "/v1/telemetry/report", { headers: await signedHeaders(early, body), rawBody: body }),
      401,
      "invalid_telemetry_signature",
    );
    const wrongBody = JSON.stringify(telemetryEvent(ghost));
    const wrong = await expectProblem(
      await call("POST", "/v1/telemetry/report", {
        headers: { ...(await signedHeaders(ghost, "other")), "x-telemetry-deployment-id": ghost.deploymentId },
        rawBody: wrongBody,
      }),
      401,
      "invalid_telemetry_signature",
    );
    expect({ check: unknown.check, detail: unknown.detail }).toEqual({ check: wrong.check, detail: wrong.detail });

    // A deployment with that id created now is found once the negative entry has expired.
    const dep = await seedDeployment({ deploymentId });
    const later = JSON.stringify(telemetryEvent(dep));
    const result = await ingestTelemetryReport(
      { db, keyring, tierLimits, usageQueue: env.USAGE_QUEUE, now: Date.now() + 31_000 },
      { body: utf8.encode(later), signature: await signTelemetry(dep.secret, later), deploymentId },
    );
    expect(result).toEqual({ accepted: 1, queued: true });
    expect(await storedTelemetryCount(deploymentId)).toBe(1);
  });
});

describe("retention of metrics_events", () => {
  async function userWithEvents(tier: "free" | "pro" | null, ages: number[], now: number) {
    const { userId, agentId } = await insertUserAndAgent();
    if (tier) {
      await db.insert(subscriptions).values({
        id: newId("subscription", now),
        userId,
        tier,
        status: "active",
        createdAt: now,
        updatedAt: now,
      });
    }
    const deploymentId = newId("deployment", now);
    await db.insert(metricsEvents).values(
      ages.map((age, i) => ({
        id: newId("event", now),
        userId,
        agentId,
        deploymentId,
        source: "telemetry" as const,
        dedupeKey: `event:${i}`,
        runtimeProvider: "cloudflare",
        kind: "invoke",
        ts: now - age * DAY,
        receivedAt: now,
      })),
    );
    await db.insert(billingUsage).values({
      id: newId("usage", now),
      userId,
      periodKey: "2000-01",
      agentId,
      requests: 42,
      updatedAt: now,
    });
    return userId;
  }

  async function agesOf(userId: string, now: number): Promise<number[]> {
    const rows = await db.select({ ts: metricsEvents.ts }).from(metricsEvents).where(eq(metricsEvents.userId, userId));
    return rows.map((r) => Math.round((now - r.ts) / DAY)).sort((a, b) => a - b);
  }

  it("deletes each user's events older than their tier keeps them, in bounded batches, keeping billing_usage", async () => {
    const now = Date.now();
    const free = await userWithEvents(null, [1, 6, 8, 20, 100], now);
    const pro = await userWithEvents("pro", [1, 8, 20, 31, 100], now);
    const { tierLimits } = await getConfig(env);

    // Tiny batches: a run stops after its statement budget and the next run carries on.
    const first = await expireMetricsEvents(db, { tierLimits, now, keepFrom: now, batchRows: 1, maxStatements: 2 });
    expect(first).toMatchObject({ statements: 2, complete: false });
    for (let i = 0; i < 20; i++) {
      const run = await expireMetricsEvents(db, { tierLimits, now, keepFrom: now, batchRows: 2, maxStatements: 3 });
      if (run.complete) break;
    }
    expect(await agesOf(free, now)).toEqual([1, 6]);
    expect(await agesOf(pro, now)).toEqual([1, 8, 20]);

    // Usage history stays.
    const usage = await db
      .select({ requests: billingUsage.requests })
      .from(billingUsage)
      .where(inArray(billingUsage.userId, [free, pro]));
    expect(usage.map((u) => u.requests)).toEqual([42, 42]);
  });

  it("never deletes events of a period the reconcile task still recomputes (keepFrom)", async () => {
    const now = Date.now();
    const free = await userWithEvents(null, [8, 20], now);
    const { tierLimits } = await getConfig(env);
    await expireMetricsEvents(db, { tierLimits, now, keepFrom: now - 10 * DAY });
    expect(await agesOf(free, now)).toEqual([8]);
  });

  it("runs in the cron (task expire_metrics_events)", async () => {
    const now = Date.now();
    const free = await userWithEvents(null, [1, 100], now);
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: now, cron: "*/5 * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    expect(await agesOf(free, now)).toEqual([1]);
  });

  it("walks an index in both statements (EXPLAIN QUERY PLAN)", async () => {
    const plan = async (statement: string, params: unknown[]) => {
      const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${statement}`)
        .bind(...params)
        .all<{ detail: string }>();
      return results.map((r) => r.detail).join("\n");
    };
    const all = await plan(EXPIRE_ALL_SQL, [Date.now(), 5000]);
    expect(all).toMatch(/metrics_events USING (COVERING )?INDEX metrics_events_ts_idx \(ts<\?\)/);
    expect(all).not.toMatch(/SCAN metrics_events/);
    const tier = await plan(EXPIRE_TIER_SQL, [Date.now(), 5000, "free"]);
    // Users outside (bounded by the number of users), each user's expired events through the index.
    expect(tier).toMatch(/SEARCH m USING (COVERING )?INDEX metrics_events_user_ts_idx \(user_id=\? AND ts<\?\)/);
    expect(tier).not.toMatch(/SCAN m\b/);
  });
});

describe("TIER_LIMITS validation of the telemetry keys", () => {
  it("has defaults per tier and refuses values that could not work", () => {
    expect(DEFAULT_TIER_LIMITS.free).toMatchObject({
      telemetryEventsPerMinute: 600,
      telemetryEventsPerPeriod: 10_000,
      metricsRetentionDays: 7,
    });
    expect(parseTierLimits(JSON.stringify({ pro: { metricsRetentionDays: 60 } })).pro.metricsRetentionDays).toBe(60);
    expect(() => parseTierLimits(JSON.stringify({ free: { telemetryEventsPerMinute: 50 } }))).toThrow(
      "TIER_LIMITS.free.telemetryEventsPerMinute: must be at least 100",
    );
    expect(() => parseTierLimits(JSON.stringify({ free: { metricsRetentionDays: 0 } }))).toThrow(
      "TIER_LIMITS.free.metricsRetentionDays: must be a positive integer",
    );
    expect(() => parseTierLimits(JSON.stringify({ free: { telemetryEventsPerPeriod: 1.5 } }))).toThrow(
      "TIER_LIMITS.free.telemetryEventsPerPeriod: must be an integer",
    );
  });
});
