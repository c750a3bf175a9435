// `usage.threshold`: announced when a user's metered invocations for a period reach 50, 80 and
// 100% of their plan's invocationsPerPeriod, each once per period. Checked after each metering
// batch lands (services/metering/usage-queue.ts), only for the users in the batch that have an
// enabled endpoint subscribed to the event, so metering costs nothing more for everyone else.
// "Once" is a row in webhook_usage_thresholds: the INSERT that creates it is the only one that
// publishes, however many batches race.
import { and, eq, inArray, sql, sum } from "drizzle-orm";
import { billingUsage, webhookEndpoints, webhookUsageThresholds } from "../../db/schema";
import { periodKeyOf } from "../../lib/time";
import type { TierLimitsByTier } from "../usage/tiers";
import { getUserTier } from "../usage/user-tier";
import { type PublishDeps, publishEvent } from "./publish";

export const USAGE_THRESHOLD_PERCENTS = [50, 80, 100] as const;
const USERS_PER_QUERY = 90;

/** An invocation as metering saw it: who, and when (the period is its UTC month). */
export type MeteredInvocation = { userId: string; ts: number };

export async function announceUsageThresholds(
  deps: PublishDeps & { tierLimits: TierLimitsByTier },
  invocations: readonly MeteredInvocation[],
  opts: { now?: number } = {},
): Promise<{ announced: number }> {
  const now = opts.now ?? Date.now();
  const periodsByUser = new Map<string, Set<string>>();
  for (const inv of invocations) {
    const periods = periodsByUser.get(inv.userId) ?? new Set<string>();
    periods.add(periodKeyOf(inv.ts));
    periodsByUser.set(inv.userId, periods);
  }
  if (periodsByUser.size === 0) return { announced: 0 };
  const { db } = deps;
  const users = [...periodsByUser.keys()];
  const subscribed: Array<{ userId: string }> = [];
  // In slices: D1 binds at most 100 parameters per statement, and a batch may hold 100 users.
  for (let i = 0; i < users.length; i += USERS_PER_QUERY) {
    subscribed.push(
      ...(await db
        .selectDistinct({ userId: webhookEndpoints.userId })
        .from(webhookEndpoints)
        .where(
          and(
            inArray(webhookEndpoints.userId, users.slice(i, i + USERS_PER_QUERY)),
            eq(webhookEndpoints.status, "enabled"),
            sql`EXISTS (SELECT 1 FROM json_each(${webhookEndpoints.events}) WHERE json_each.value = 'usage.threshold')`,
          ),
        )),
    );
  }
  let announced = 0;
  for (const { userId } of subscribed) {
    const tier = await getUserTier(db, userId, { now });
    const limit = deps.tierLimits[tier].invocationsPerPeriod;
    for (const periodKey of periodsByUser.get(userId) ?? []) {
      const [row] = await db
        .select({ requests: sum(billingUsage.requests) })
        .from(billingUsage)
        .where(and(eq(billingUsage.userId, userId), eq(billingUsage.periodKey, periodKey)));
      const invocationsSoFar = Number(row?.requests ?? 0);
      const reached = USAGE_THRESHOLD_PERCENTS.filter((percent) => invocationsSoFar * 100 >= percent * limit);
      if (reached.length === 0) continue;
      const fresh = await db
        .insert(webhookUsageThresholds)
        .values(reached.map((percent) => ({ userId, periodKey, percent, createdAt: now })))
        .onConflictDoNothing()
        .returning({ percent: webhookUsageThresholds.percent });
      for (const { percent } of fresh.sort((a, b) => a.percent - b.percent)) {
        await publishEvent(
          deps,
          {
            userId,
            type: "usage.threshold",
            data: { periodKey, percent, invocations: invocationsSoFar, limit, tier },
          },
          { now },
        );
        announced++;
      }
    }
  }
  return { announced };
}
