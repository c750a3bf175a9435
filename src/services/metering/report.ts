// A user's metered usage for one billing period, read from billing_usage (one row per agent),
// with the tier's limits and what remains of them. The counters are fed by the usage queue, so
// they trail live traffic by the queue's batching delay (a few seconds).
import { and, count, eq, isNull, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { agents, billingUsage } from "../../db/schema";
import { periodKeyOf } from "../../lib/time";
import { deploysToday } from "../usage/plan-limits";
import type { Tier, TierLimits, TierLimitsByTier } from "../usage/tiers";
import { readUserTier } from "../usage/user-tier";

export type UsageTotals = {
  requests: number;
  errors: number;
  durationMsTotal: number;
  bytesIn: number;
  bytesOut: number;
  inputTokens: number;
  outputTokens: number;
  modelInputTokens: number;
  modelOutputTokens: number;
  egressRequests: number;
};

export type UsageReport = {
  periodKey: string;
  tier: Tier;
  usage: UsageTotals;
  limits: TierLimits;
  /** What is left: invocations this period; for the current period also agents and today's deploys. */
  remaining: { invocations: number; agents?: number; deploysToday?: number };
  agents: Array<{ agentId: string; name: string | null; deleted: boolean; usage: UsageTotals }>;
};

const ZERO: UsageTotals = {
  requests: 0,
  errors: 0,
  durationMsTotal: 0,
  bytesIn: 0,
  bytesOut: 0,
  inputTokens: 0,
  outputTokens: 0,
  modelInputTokens: 0,
  modelOutputTokens: 0,
  egressRequests: 0,
};

export async function getUsageReport(
  deps: { db: Db; userId: string; tierLimits: TierLimitsByTier },
  periodKey: string,
  now = Date.now(),
): Promise<UsageReport> {
  const { db, userId } = deps;
  const isCurrent = periodKey === periodKeyOf(now);
  // The usage page is not a hot path: read the tier fresh rather than through the isolate cache.
  const [tier, rows, liveAgents, deploys] = await Promise.all([
    readUserTier(db, userId),
    db
      .select({
        agentId: billingUsage.agentId,
        name: agents.name,
        deletedAt: agents.deletedAt,
        requests: billingUsage.requests,
        errors: billingUsage.errors,
        durationMsTotal: billingUsage.durationMsTotal,
        bytesIn: billingUsage.bytesIn,
        bytesOut: billingUsage.bytesOut,
        inputTokens: billingUsage.inputTokens,
        outputTokens: billingUsage.outputTokens,
        modelInputTokens: billingUsage.modelInputTokens,
        modelOutputTokens: billingUsage.modelOutputTokens,
        egressRequests: billingUsage.egressRequests,
      })
      .from(billingUsage)
      .leftJoin(agents, and(eq(agents.id, billingUsage.agentId), eq(agents.userId, billingUsage.userId)))
      .where(and(eq(billingUsage.userId, userId), eq(billingUsage.periodKey, periodKey)))
      .orderBy(sql`${billingUsage.requests} DESC`, billingUsage.agentId),
    isCurrent
      ? db
          .select({ n: count() })
          .from(agents)
          .where(and(eq(agents.userId, userId), isNull(agents.deletedAt)))
          .get()
      : undefined,
    isCurrent ? deploysToday(db, userId, now) : undefined,
  ]);
  const limits = deps.tierLimits[tier];
  const usage = { ...ZERO };
  const perAgent: UsageReport["agents"] = [];
  for (const row of rows) {
    const { agentId, name, deletedAt, ...totals } = row;
    for (const key of Object.keys(usage) as Array<keyof UsageTotals>) usage[key] += totals[key];
    perAgent.push({
      agentId,
      name: deletedAt === null ? name : null,
      deleted: deletedAt !== null || name === null,
      usage: totals,
    });
  }
  const remaining: UsageReport["remaining"] = {
    invocations: Math.max(0, limits.invocationsPerPeriod - usage.requests),
  };
  if (isCurrent) {
    remaining.agents = Math.max(0, limits.agents - (liveAgents?.n ?? 0));
    remaining.deploysToday = Math.max(0, limits.deploysPerDay - (deploys ?? 0));
  }
  return { periodKey, tier, usage, limits, remaining, agents: perAgent };
}
