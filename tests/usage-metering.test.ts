import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { billingUsage } from "../src/db/schema";
import { newId } from "../src/lib/ids";
import { periodKeyOf } from "../src/lib/time";
import type { MetricsEvent } from "../src/services/metering/event";
import { type ReconcileOptions, reconcileUsage } from "../src/services/metering/reconcile";
import { recordEvents, usageAggregateSelect } from "../src/services/metering/record-events";
import { admitInvocation, QUOTA_REFRESH_MS } from "../src/services/usage/invocation-quota";
import { gatewayEvent } from "./helpers/metrics-events";

const db = createDb(env.DB);

async function usageRows(userId: string) {
  return db.select().from(billingUsage).where(eq(billingUsage.userId, userId)).orderBy(billingUsage.agentId);
}

describe("metering writes", () => {
  it("stores a batch of events and adds them to usage per agent in two statements", async () => {
    const userId = newId("user");
    const events = [
      gatewayEvent(userId, "agt_a"),
      gatewayEvent(userId, "agt_a", { status: "error", errorCode: "upstream_timeout", durationMs: 30 }),
      gatewayEvent(userId, "agt_b", { streaming: true }),
      gatewayEvent(userId, "agt_a", { source: "telemetry", inputTokens: 7, outputTokens: 11, bytesIn: null }),
    ];
    expect(await recordEvents(db, events)).toEqual({ inserted: 4 });
    const [a, b] = await usageRows(userId);
    expect(a).toMatchObject({
      agentId: "agt_a",
      periodKey: periodKeyOf(Date.now()),
      requests: 2,
      errors: 1,
      durationMsTotal: 40,
      bytesIn: 200,
      bytesOut: 400,
      inputTokens: 7,
      outputTokens: 11,
    });
    expect(b).toMatchObject({ agentId: "agt_b", requests: 1, errors: 0 });
  });

  it("counts a redelivered event once, also when mixed with new ones", async () => {
    const userId = newId("user");
    const first = gatewayEvent(userId, "agt_a");
    await recordEvents(db, [first]);
    expect(await recordEvents(db, [first, gatewayEvent(userId, "agt_a")])).toEqual({ inserted: 1 });
    const [row] = await usageRows(userId);
    expect(row?.requests).toBe(2);
  });

  it("reconciliation rebuilds a corrupted counter from the events", async () => {
    const userId = newId("user");
    await recordEvents(db, [gatewayEvent(userId, "agt_a"), gatewayEvent(userId, "agt_a", { status: "error" })]);
    await db.update(billingUsage).set({ requests: 999, errors: 0 }).where(eq(billingUsage.userId, userId));
    await db.insert(billingUsage).values({
      id: newId("usage"),
      userId,
      periodKey: periodKeyOf(Date.now()),
      agentId: "agt_ghost",
      requests: 5,
      updatedAt: 0,
    });
    const { corrected } = await reconcileUntilDone();
    expect(corrected).toBeGreaterThanOrEqual(2);
    const rows = await usageRows(userId);
    expect(rows.map((r) => [r.agentId, r.requests, r.errors])).toEqual([
      ["agt_a", 2, 1],
      ["agt_ghost", 0, 0],
    ]);
    const again = await reconcileUntilDone();
    const mine = await db
      .select()
      .from(billingUsage)
      .where(and(eq(billingUsage.userId, userId), eq(billingUsage.agentId, "agt_a")));
    expect(mine[0]?.requests).toBe(2);
    expect(again.corrected).toBe(0);
  });
});

/** Reconcile runs until everything is verified and the sweep has passed every counter once. */
async function reconcileUntilDone(opts: ReconcileOptions = {}) {
  const runs = [];
  for (let i = 0; i < 1000; i++) {
    const r = await reconcileUsage(db, opts);
    runs.push(r);
    if (r.caughtUp && r.dirtyLeft === 0 && r.sweptToEnd) break;
  }
  return {
    runs,
    events: runs.reduce((n, r) => n + r.events, 0),
    corrected: runs.reduce((n, r) => n + r.corrected, 0),
  };
}

const COUNTER_FIELDS = [
  "requests",
  "errors",
  "durationMsTotal",
  "bytesIn",
  "bytesOut",
  "inputTokens",
  "outputTokens",
] as const;

/** The users' usage recomputed in full from metrics_events, as "user period agent: counters" lines. */
async function fullRecompute(userIds: string[]): Promise<string[]> {
  const placeholders = userIds.map((_, i) => `?${i + 10}`).join(", ");
  const results = await env.DB.prepare(usageAggregateSelect(`user_id IN (${placeholders})`))
    .bind(null, null, null, null, null, null, null, null, 0, ...userIds)
    .raw<[string, string, string, string, ...number[]]>();
  return results
    .map(([, user, period, agent, ...counters]) => `${user} ${period} ${agent}: ${counters.slice(0, 7).join(",")}`)
    .sort();
}

/** billing_usage of the users in the same shape (rows whose counters are all zero left out). */
async function billingLines(userIds: string[]): Promise<string[]> {
  const rows = [];
  for (const userId of userIds) rows.push(...(await usageRows(userId)));
  return rows
    .map((r) => ({ key: `${r.userId} ${r.periodKey} ${r.agentId}`, counters: COUNTER_FIELDS.map((f) => r[f]) }))
    .filter((r) => r.counters.some((c) => c !== 0))
    .map((r) => `${r.key}: ${r.counters.join(",")}`)
    .sort();
}

/** Events stored without going through the consumer: billing_usage never counted them. */
async function insertUncounted(events: MetricsEvent[]) {
  for (const e of events) {
    await env.DB.prepare(
      `INSERT INTO metrics_events (id, user_id, agent_id, deployment_id, source, dedupe_key, runtime_provider, kind, ts,
         duration_ms, status, bytes_in, bytes_out, input_tokens, output_tokens, received_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)`,
    )
      .bind(
        e.id,
        e.userId,
        e.agentId,
        e.deploymentId,
        e.source,
        e.dedupeKey,
        e.runtimeProvider,
        e.kind,
        e.ts,
        e.durationMs,
        e.status,
        e.bytesIn,
        e.bytesOut,
        e.inputTokens,
        e.outputTokens,
        e.receivedAt,
      )
      .run();
  }
}

describe("incremental reconciliation", () => {
  it("repairs every kind of drift, in bounded runs that leave the rest for the next, and ends equal to a full recompute", async () => {
    const u1 = newId("user");
    const u2 = newId("user");
    const jan = Date.UTC(2031, 0, 15);
    const feb = Date.UTC(2031, 1, 3);
    await recordEvents(db, [
      gatewayEvent(u1, "agt_a", { ts: jan }),
      gatewayEvent(u1, "agt_a", { ts: feb, status: "error", durationMs: 70 }),
      gatewayEvent(u1, "agt_b", { ts: feb, source: "telemetry", inputTokens: 5, outputTokens: 9 }),
      gatewayEvent(u2, "agt_c", { ts: jan, bytesIn: 1, bytesOut: 2 }),
      gatewayEvent(u2, "agt_d", { ts: feb }),
    ]);
    // Drift of every kind: events nobody counted, a corrupted counter, a lost counter row, a
    // counter with no events behind it.
    await insertUncounted([gatewayEvent(u1, "agt_e", { ts: jan }), gatewayEvent(u2, "agt_c", { ts: jan })]);
    await db
      .update(billingUsage)
      .set({ requests: 999 })
      .where(
        and(eq(billingUsage.userId, u1), eq(billingUsage.agentId, "agt_a"), eq(billingUsage.periodKey, "2031-02")),
      );
    await db.delete(billingUsage).where(and(eq(billingUsage.userId, u2), eq(billingUsage.agentId, "agt_d")));
    await db.insert(billingUsage).values({
      id: newId("usage"),
      userId: u2,
      periodKey: "2031-01",
      agentId: "agt_ghost",
      requests: 5,
      updatedAt: 0,
    });
    const expected = await fullRecompute([u1, u2]);
    expect(await billingLines([u1, u2])).not.toEqual(expected);

    // A tiny budget: 3 events and 2 keys per step, one step per run.
    const bound = { sliceEvents: 3, sweepKeys: 2, maxSteps: 1 };
    const first = await reconcileUsage(db, bound);
    expect(first.events).toBeLessThanOrEqual(3);
    expect(first.caughtUp && first.dirtyLeft === 0 && first.sweptToEnd).toBe(false);

    // Consumer traffic keeps arriving between runs; it must be neither lost nor counted twice.
    await recordEvents(db, [gatewayEvent(u1, "agt_a", { ts: feb }), gatewayEvent(u2, "agt_c", { ts: jan })]);
    const done = await reconcileUntilDone(bound);
    expect(done.runs.length).toBeGreaterThan(2);
    for (const r of done.runs) expect(r.events).toBeLessThanOrEqual(3);
    expect(await billingLines([u1, u2])).toEqual(await fullRecompute([u1, u2]));
    const ghost = await db
      .select()
      .from(billingUsage)
      .where(and(eq(billingUsage.userId, u2), eq(billingUsage.agentId, "agt_ghost")));
    expect(ghost[0]?.requests).toBe(0);

    // New drift after everything was verified is found too, and a clean state stays untouched.
    await insertUncounted([gatewayEvent(u2, "agt_d", { ts: feb, durationMs: 3 })]);
    await db.update(billingUsage).set({ bytesOut: 1 }).where(eq(billingUsage.userId, u1));
    await reconcileUntilDone(bound);
    expect(await billingLines([u1, u2])).toEqual(await fullRecompute([u1, u2]));
    expect((await reconcileUntilDone(bound)).corrected).toBe(0);
  });
});

describe("invocation quota", () => {
  it("admits exactly the limit, refuses the next, and admits again in the next period", async () => {
    const userId = newId("user");
    const now = Date.UTC(2031, 0, 31, 23, 59, 0);
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await admitInvocation(db, { userId, limit: 3, now: now + i }));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false]);
    expect(decisions.map((d) => d.remaining)).toEqual([2, 1, 0, 0]);
    expect(decisions[3]?.resetSeconds).toBe(60);
    const nextPeriod = await admitInvocation(db, { userId, limit: 3, now: Date.UTC(2031, 1, 1, 0, 0, 1) });
    expect(nextPeriod).toMatchObject({ allowed: true, remaining: 2, periodKey: "2031-02" });
  });

  it("picks up usage metered elsewhere when it refreshes, and never forgets its own admissions", async () => {
    const userId = newId("user");
    const now = Date.UTC(2031, 5, 10);
    expect((await admitInvocation(db, { userId, limit: 10, now })).remaining).toBe(9);
    // Another isolate's traffic reaches billing_usage.
    await db
      .insert(billingUsage)
      .values({ id: newId("usage"), userId, periodKey: "2031-06", agentId: "agt_x", requests: 8, updatedAt: now });
    // Within the refresh interval the local count is used (no D1 read), then D1's larger count wins.
    expect((await admitInvocation(db, { userId, limit: 10, now: now + 1 })).remaining).toBe(8);
    expect((await admitInvocation(db, { userId, limit: 10, now: now + QUOTA_REFRESH_MS + 2 })).remaining).toBe(1);
    // D1 lagging behind local admissions does not lower the count.
    await db.update(billingUsage).set({ requests: 0 }).where(eq(billingUsage.userId, userId));
    expect((await admitInvocation(db, { userId, limit: 10, now: now + 2 * QUOTA_REFRESH_MS + 4 })).remaining).toBe(0);
    expect((await admitInvocation(db, { userId, limit: 10, now: now + 2 * QUOTA_REFRESH_MS + 5 })).allowed).toBe(false);
  });
});
