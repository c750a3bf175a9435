// The per-period invocation limit, checked without a D1 read on every invocation: each isolate
// keeps the user's count for the period, refreshes it from billing_usage at most every
// QUOTA_REFRESH_MS, and counts its own admissions in between. Counts only grow within a period,
// so the refreshed value is max(D1, local): the local admissions not yet metered are never lost.
// How far over the limit concurrent traffic can go is in docs/operations.md ("Usage metering and the invocation limit").
//
// Within one isolate nothing is spent twice: requests that find the count missing or due for
// refresh share one D1 read (the cache's single flight), and every admission is applied to one
// counter object per user and period. A refresh raises that same object to max(D1, local) rather
// than replacing it, so an admission made while the read was in flight still counts. (One edge:
// if the very first read of a user's count takes longer than QUOTA_REFRESH_MS, a second read
// starts with a counter of its own, and admissions counted on the first reach this isolate's
// count at a later refresh, through D1 — an overshoot of the kind docs/operations.md bounds.)
import { and, eq, sum } from "drizzle-orm";
import type { Db } from "../../db/client";
import { billingUsage } from "../../db/schema";
import { IsolateCache } from "../../lib/isolate-cache";
import { periodBounds, periodKeyOf } from "../../lib/time";

export const QUOTA_REFRESH_MS = 2000;
const MAX_TRACKED_USERS = 50_000;

type Counter = { count: number };

// `${userId} ${periodKey}` -> the period's invocation count as this isolate knows it: D1's part is
// up to QUOTA_REFRESH_MS stale, which only lets other isolates' traffic overshoot (docs/operations.md).
const counters = new IsolateCache<string, Counter>({ maxEntries: MAX_TRACKED_USERS, ttlMs: QUOTA_REFRESH_MS });

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
  input: { userId: string; limit: number; now?: number; waitUntil?: (promise: Promise<unknown>) => void },
): Promise<QuotaDecision> {
  const now = input.now ?? Date.now();
  const periodKey = periodKeyOf(now);
  const resetSeconds = Math.max(1, Math.ceil((periodBounds(periodKey).end - now) / 1000));
  const counter = await counters.get(
    `${input.userId} ${periodKey}`,
    async (previous) => {
      const counter = previous ?? { count: 0 };
      const metered = await meteredInvocations(db, input.userId, periodKey);
      // After the read, so admissions made on this counter while it was in flight are kept.
      counter.count = Math.max(counter.count, metered);
      return counter;
    },
    { now, waitUntil: input.waitUntil },
  );
  // From here to the increment there is no await: the check and the admission are one step.
  if (counter.count >= input.limit) {
    return { allowed: false, limit: input.limit, remaining: 0, resetSeconds, periodKey };
  }
  counter.count += 1;
  return { allowed: true, limit: input.limit, remaining: input.limit - counter.count, resetSeconds, periodKey };
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
