// The per-period invocation limit, checked without a D1 read on every invocation: each isolate
// keeps the user's count for the period, refreshes it from billing_usage at most every
// QUOTA_REFRESH_MS, and counts its own admissions in between. Counts only grow within a period,
// so the refreshed value is max(D1, local): the local admissions not yet metered are never lost.
// How far over the limit concurrent traffic can go is in docs/operations.md ("Usage metering and the invocation limit").
import { and, eq, sum } from "drizzle-orm";
import type { Db } from "../../db/client";
import { billingUsage } from "../../db/schema";
import { periodBounds, periodKeyOf } from "../../lib/time";

export const QUOTA_REFRESH_MS = 2000;

type QuotaEntry = { periodKey: string; count: number; refreshedAt: number };

// userId -> the period's invocation count as this isolate knows it.
const quotaByUser = new Map<string, QuotaEntry>();
const MAX_TRACKED_USERS = 50_000;

export type QuotaDecision = {
  allowed: boolean;
  limit: number;
  /** Invocations left after this one (0 when refused). */
  remaining: number;
  /** Seconds until the period resets (the next UTC month). */
  resetSeconds: number;
  periodKey: string;
};

export async function admitInvocation(
  db: Db,
  input: { userId: string; limit: number; now?: number },
): Promise<QuotaDecision> {
  const now = input.now ?? Date.now();
  const periodKey = periodKeyOf(now);
  const resetSeconds = Math.max(1, Math.ceil((periodBounds(periodKey).end - now) / 1000));
  let entry = quotaByUser.get(input.userId);
  if (!entry || entry.periodKey !== periodKey || now - entry.refreshedAt >= QUOTA_REFRESH_MS) {
    const metered = await meteredInvocations(db, input.userId, periodKey);
    const local = entry && entry.periodKey === periodKey ? entry.count : 0;
    entry = { periodKey, count: Math.max(metered, local), refreshedAt: now };
    if (quotaByUser.size >= MAX_TRACKED_USERS) quotaByUser.clear();
    quotaByUser.set(input.userId, entry);
  }
  if (entry.count >= input.limit) {
    return { allowed: false, limit: input.limit, remaining: 0, resetSeconds, periodKey };
  }
  entry.count += 1;
  return { allowed: true, limit: input.limit, remaining: input.limit - entry.count, resetSeconds, periodKey };
}

async function meteredInvocations(db: Db, userId: string, periodKey: string): Promise<number> {
  const [row] = await db
    .select({ requests: sum(billingUsage.requests) })
    .from(billingUsage)
    .where(and(eq(billingUsage.userId, userId), eq(billingUsage.periodKey, periodKey)));
  return Number(row?.requests ?? 0);
}

/** IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers) for a decision. */
export function rateLimitHeaders(d: QuotaDecision): Record<string, string> {
  const window = Math.ceil((periodBounds(d.periodKey).end - periodBounds(d.periodKey).start) / 1000);
  return {
    "ratelimit-policy": `"period";q=${d.limit};w=${window}`,
    ratelimit: `"period";r=${d.remaining};t=${d.resetSeconds}`,
  };
}
