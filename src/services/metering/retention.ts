// Retention of metrics_events (tier key `metricsRetentionDays`): rows whose `ts` is older than the
// user's tier keeps them are deleted by the cron, in bounded batches. billing_usage is not touched:
// usage history stays after the events behind it are gone.
//
// Two kinds of statement, each deleting at most RETENTION_BATCH_ROWS rows, and at most
// RETENTION_MAX_STATEMENTS statements per run (the rest waits for the next run):
//  - older than the longest retention of any tier: deleted whoever they belong to (also the rows
//    of deleted users), walking the `ts` index (metrics_events_ts_idx) from the oldest row;
//  - older than a shorter tier's retention: per user of that tier, through the (user_id, ts)
//    index (metrics_events_user_ts_idx), so rows that other tiers still keep are never scanned.
//
// `keepFrom` is a floor no deletion crosses: the reconcile task recomputes billing_usage from the
// events of the periods it reconciles, so deleting those events would lower the usage it writes.
// The cron passes the start of the oldest period it reconciles.
import type { Db } from "../../db/client";
import { TIERS, type Tier, type TierLimitsByTier } from "../usage/tiers";

export const RETENTION_BATCH_ROWS = 5_000;
export const RETENTION_MAX_STATEMENTS = 20;
const DAY_MS = 24 * 60 * 60 * 1000;

export const EXPIRE_ALL_SQL = `DELETE FROM metrics_events WHERE rowid IN (
  SELECT rowid FROM metrics_events WHERE ts < ?1 ORDER BY ts LIMIT ?2)`;

// The user's tier exactly as services/usage/user-tier.ts reads it: the newest active subscription,
// else free. CROSS JOIN fixes the loop order (users outside, their events inside): left to itself
// the planner may walk the ts index instead, through rows of every tier.
export const EXPIRE_TIER_SQL = `DELETE FROM metrics_events WHERE rowid IN (
  SELECT m.rowid FROM users u CROSS JOIN metrics_events m ON m.user_id = u.id AND m.ts < ?1
  WHERE COALESCE((SELECT s.tier FROM subscriptions s WHERE s.user_id = u.id AND s.status = 'active'
    ORDER BY s.created_at DESC, s.id DESC LIMIT 1), 'free') = ?3
  LIMIT ?2)`;

export type RetentionReport = { deleted: number; statements: number; complete: boolean };

export async function expireMetricsEvents(
  db: Db,
  input: {
    tierLimits: TierLimitsByTier;
    now: number;
    keepFrom: number;
    batchRows?: number;
    maxStatements?: number;
  },
): Promise<RetentionReport> {
  const batchRows = input.batchRows ?? RETENTION_BATCH_ROWS;
  const maxStatements = input.maxStatements ?? RETENTION_MAX_STATEMENTS;
  const cutoffOf = (tier: Tier) =>
    Math.min(input.now - input.tierLimits[tier].metricsRetentionDays * DAY_MS, input.keepFrom);
  const oldestCutoff = Math.min(...TIERS.map(cutoffOf));
  const steps: Array<{ sql: string; params: Array<string | number> }> = [
    { sql: EXPIRE_ALL_SQL, params: [oldestCutoff, batchRows] },
    ...TIERS.filter((t) => cutoffOf(t) > oldestCutoff).map((t) => ({
      sql: EXPIRE_TIER_SQL,
      params: [cutoffOf(t), batchRows, t],
    })),
  ];
  let deleted = 0;
  let statements = 0;
  for (const step of steps) {
    for (;;) {
      if (statements >= maxStatements) return { deleted, statements, complete: false };
      const result = await db.$client
        .prepare(step.sql)
        .bind(...step.params)
        .run();
      statements += 1;
      const changes = result.meta.changes ?? 0;
      deleted += changes;
      if (changes < batchRows) break;
    }
  }
  return { deleted, statements, complete: true };
}
