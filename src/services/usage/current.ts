// The caller's usage for the current UTC billing period, computed from metrics_events:
// requests, errors, duration and bytes from the gateway's own measurements (source 'gateway'),
// token counts from verified telemetry (source 'telemetry'). This is the one place usage is
// computed; a metered billing_usage table can replace the query without changing callers.
import { and, desc, eq, gte, lt, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { metricsEvents, subscriptions, type Tier } from "../../db/schema";
import { periodBounds, periodKeyOf } from "../../lib/time";

export type UsageTotals = {
  requests: number;
  errors: number;
  durationMsTotal: number;
  bytesIn: number;
  bytesOut: number;
  inputTokens: number;
  outputTokens: number;
};

export type CurrentUsage = { periodKey: string; tier: Tier; usage: UsageTotals };

type Ctx = { db: Db; userId: string };

/** The tier of the user's newest active subscription; no active subscription means `free`. */
export async function getUserTier({ db, userId }: Ctx): Promise<Tier> {
  const row = await db
    .select({ tier: subscriptions.tier })
    .from(subscriptions)
    .where(and(eq(subscriptions.userId, userId), eq(subscriptions.status, "active")))
    .orderBy(desc(subscriptions.createdAt), desc(subscriptions.id))
    .get();
  return row?.tier ?? "free";
}

export async function getCurrentUsage(ctx: Ctx, now = Date.now()): Promise<CurrentUsage> {
  const periodKey = periodKeyOf(now);
  const { start, end } = periodBounds(periodKey);
  const gateway = sql`${metricsEvents.source} = 'gateway'`;
  const telemetry = sql`${metricsEvents.source} = 'telemetry'`;
  const sum = (condition: ReturnType<typeof sql>, value: ReturnType<typeof sql>) =>
    sql<number>`coalesce(sum(case when ${condition} then ${value} else 0 end), 0)`.mapWith(Number);
  const [tier, totals] = await Promise.all([
    getUserTier(ctx),
    ctx.db
      .select({
        requests: sum(gateway, sql`1`),
        errors: sum(sql`${gateway} and ${metricsEvents.status} = 'error'`, sql`1`),
        durationMsTotal: sum(gateway, sql`coalesce(${metricsEvents.durationMs}, 0)`),
        bytesIn: sum(gateway, sql`coalesce(${metricsEvents.bytesIn}, 0)`),
        bytesOut: sum(gateway, sql`coalesce(${metricsEvents.bytesOut}, 0)`),
        inputTokens: sum(telemetry, sql`coalesce(${metricsEvents.inputTokens}, 0)`),
        outputTokens: sum(telemetry, sql`coalesce(${metricsEvents.outputTokens}, 0)`),
      })
      .from(metricsEvents)
      .where(and(eq(metricsEvents.userId, ctx.userId), gte(metricsEvents.ts, start), lt(metricsEvents.ts, end)))
      .get(),
  ]);
  return {
    periodKey,
    tier,
    usage: totals ?? {
      requests: 0,
      errors: 0,
      durationMsTotal: 0,
      bytesIn: 0,
      bytesOut: 0,
      inputTokens: 0,
      outputTokens: 0,
    },
  };
}
