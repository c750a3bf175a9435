import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { billingUsage } from "../src/db/schema";
import { newId } from "../src/lib/ids";
import { periodKeyOf } from "../src/lib/time";
import type { MetricsEvent } from "../src/services/metering/event";
import { reconcilePeriod } from "../src/services/metering/reconcile";
import { recordEvents } from "../src/services/metering/record-events";
import { admitInvocation, QUOTA_REFRESH_MS } from "../src/services/usage/invocation-quota";

const db = createDb(env.DB);

function gatewayEvent(userId: string, agentId: string, overrides: Partial<MetricsEvent> = {}): MetricsEvent {
  const id = newId("event");
  return {
    id,
    userId,
    agentId,
    deploymentId: "dep_test",
    source: "gateway",
    dedupeKey: id,
    eventId: id,
    traceId: null,
    runtimeProvider: "cloudflare",
    kind: "invoke",
    ts: Date.now(),
    durationMs: 10,
    status: "ok",
    errorCode: null,
    inputTokens: null,
    outputTokens: null,
    bytesIn: 100,
    bytesOut: 200,
    streaming: false,
    receivedAt: Date.now(),
    ...overrides,
  };
}

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
    const { corrected } = await reconcilePeriod(db, periodKeyOf(Date.now()));
    expect(corrected).toBeGreaterThanOrEqual(2);
    const rows = await usageRows(userId);
    expect(rows.map((r) => [r.agentId, r.requests, r.errors])).toEqual([
      ["agt_a", 2, 1],
      ["agt_ghost", 0, 0],
    ]);
    const again = await reconcilePeriod(db, periodKeyOf(Date.now()));
    const mine = await db
      .select()
      .from(billingUsage)
      .where(and(eq(billingUsage.userId, userId), eq(billingUsage.agentId, "agt_a")));
    expect(mine[0]?.requests).toBe(2);
    expect(again.corrected).toBe(0);
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
