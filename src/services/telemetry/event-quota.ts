// The per-period telemetry quota (tier key `telemetryEventsPerPeriod`): verified telemetry events a
// user may store per UTC month, over all their deployments. Checked like the invocation limit
// (services/usage/invocation-quota.ts): each isolate keeps the user's count for the period,
// refreshes it from billing_usage.telemetry_events at most every QUOTA_REFRESH_MS (one read shared
// by concurrent reports), and counts its own admissions in between, so a report costs no D1 read.
// Counts only grow within a period, so a refresh raises the count to max(D1, local).
//
// A report is admitted whole (all its events fit) or refused whole, and its events are counted
// when admitted — duplicates included. The events are stored later by the usage queue's consumer
// (services/metering/usage-queue.ts), the only place that learns which were duplicates, and it runs wherever the queue
// delivers, not in the isolate that admitted them, so it cannot give them back. A replay therefore
// uses this isolate's count like a new event (until the period ends or the isolate is recycled),
// while billing_usage.telemetry_events — what usage shows, what a fresh isolate starts from —
// counts only stored events. The quota is a bound against floods, and a replay costs the gateway
// the same verification and queueing work as a new event; billing stays exact. Events that could
// not be queued are given back (`release`). Several isolates admitting at once can overshoot the
// limit by what each admits before its next refresh — the same bound as for invocations
// (docs/operations.md).
import { and, eq, sum } from "drizzle-orm";
import type { Db } from "../../db/client";
import { billingUsage } from "../../db/schema";
import { IsolateCache } from "../../lib/isolate-cache";
import { periodBounds, periodKeyOf } from "../../lib/time";
import { QUOTA_REFRESH_MS } from "../usage/invocation-quota";

const MAX_TRACKED_USERS = 50_000;

type Counter = { count: number };

// `${userId} ${periodKey}` -> the period's stored telemetry events as this isolate knows them.
const counters = new IsolateCache<string, Counter>({ maxEntries: MAX_TRACKED_USERS, ttlMs: QUOTA_REFRESH_MS });

export type EventQuotaDecision =
  | { allowed: true; periodKey: string; release: (unused: number) => void }
  | { allowed: false; periodKey: string; limit: number; current: number; resetSeconds: number };

/** Admits `cost` events for the user's current period, or refuses them all. */
export async function admitTelemetryEvents(
  db: Db,
  input: {
    userId: string;
    cost: number;
    limit: number;
    now?: number;
    waitUntil?: (promise: Promise<unknown>) => void;
  },
): Promise<EventQuotaDecision> {
  const now = input.now ?? Date.now();
  const periodKey = periodKeyOf(now);
  const counter = await counters.get(
    `${input.userId} ${periodKey}`,
    async (previous) => {
      const counter = previous ?? { count: 0 };
      const stored = await storedTelemetryEvents(db, input.userId, periodKey);
      counter.count = Math.max(counter.count, stored);
      return counter;
    },
    { now, waitUntil: input.waitUntil },
  );
  // No await between the check and the admission.
  if (counter.count + input.cost > input.limit) {
    const resetSeconds = Math.max(1, Math.ceil((periodBounds(periodKey).end - now) / 1000));
    return { allowed: false, periodKey, limit: input.limit, current: counter.count, resetSeconds };
  }
  counter.count += input.cost;
  return {
    allowed: true,
    periodKey,
    release: (unused) => {
      counter.count = Math.max(0, counter.count - Math.max(0, Math.min(unused, input.cost)));
    },
  };
}

async function storedTelemetryEvents(db: Db, userId: string, periodKey: string): Promise<number> {
  const [row] = await db
    .select({ events: sum(billingUsage.telemetryEvents) })
    .from(billingUsage)
    .where(and(eq(billingUsage.userId, userId), eq(billingUsage.periodKey, periodKey)));
  return Number(row?.events ?? 0);
}
