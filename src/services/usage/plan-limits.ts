// Count limits of a plan (agents, deploys per day): the 403 `plan_limit_exceeded` problem and
// the deploy-count check. The agent count is enforced inside the agent INSERT itself
// (services/agents/agents.ts); the invocation limit belongs to the invoke path.
import { and, count, eq, gte } from "drizzle-orm";
import type { Db } from "../../db/client";
import { deployments } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { startOfUtcDay } from "../../lib/time";
import type { Tier, TierLimitKey, TierLimitsByTier } from "./tiers";
import { getUserTier } from "./user-tier";

const LIMIT_NOUNS: Partial<Record<TierLimitKey, string>> = { agents: "agents", deploysPerDay: "deploys per UTC day" };

/** 403 naming the limit: `{ limit, tier, max, current }` (+ `resetsAt` for daily limits). */
export function planLimitExceeded(input: {
  limit: TierLimitKey;
  tier: Tier;
  max: number;
  current: number;
  resetsAt?: number;
}): ApiError {
  const noun = LIMIT_NOUNS[input.limit] ?? input.limit;
  const until = input.resetsAt === undefined ? "" : ` until ${new Date(input.resetsAt).toISOString()}`;
  return new ApiError(
    "plan_limit_exceeded",
    `the ${input.tier} plan allows ${input.max} ${noun}; you have ${input.current}${until}`,
    {
      extra: {
        limit: input.limit,
        tier: input.tier,
        max: input.max,
        current: input.current,
        ...(input.resetsAt === undefined ? {} : { resetsAt: new Date(input.resetsAt).toISOString() }),
      },
    },
  );
}

/** Deployments the user created since 00:00 UTC today (every accepted deploy counts, failed or not). */
export async function deploysToday(db: Db, userId: string, now = Date.now()): Promise<number> {
  const row = await db
    .select({ n: count() })
    .from(deployments)
    .where(and(eq(deployments.userId, userId), gte(deployments.createdAt, startOfUtcDay(now))))
    .get();
  return row?.n ?? 0;
}

/**
 * Throws `plan_limit_exceeded` (limit "deploysPerDay") when the user has already created the
 * tier's number of deployments today; call it before inserting the deployment row. It is a
 * check-then-insert: concurrent deploy requests at the boundary can overshoot by the number in
 * flight at once, which for a daily count is harmless.
 */
export async function assertDeployAllowed(
  { db, userId, tierLimits }: { db: Db; userId: string; tierLimits: TierLimitsByTier },
  opts: { now?: number } = {},
): Promise<{ tier: Tier; max: number; current: number }> {
  const now = opts.now ?? Date.now();
  const tier = await getUserTier(db, userId, { now });
  const max = tierLimits[tier].deploysPerDay;
  const current = await deploysToday(db, userId, now);
  if (current >= max) {
    throw planLimitExceeded({ limit: "deploysPerDay", tier, max, current, resetsAt: startOfUtcDay(now) + 86_400_000 });
  }
  return { tier, max, current };
}
