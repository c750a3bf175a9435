// Expiry of the stats buckets (cron): minute buckets are read only by the 1 h window and hour
// buckets by windows up to 7 d, so each is kept a little longer than its longest window and then
// deleted in bounded batches (the rest waits for the next run). Deleted agents' buckets go the
// same way.
import type { Db } from "../../db/client";
import { pauseBetweenSteps } from "../../lib/pause";
import { HOUR_MS, MINUTE_MS } from "./aggregate";

/** How long each bucket width is kept after its start. */
export const STATS_KEEP_MS = { [MINUTE_MS]: 2 * HOUR_MS, [HOUR_MS]: 8 * 24 * HOUR_MS } as const;
export const STATS_EXPIRY_BATCH_ROWS = 5_000;
export const STATS_EXPIRY_MAX_STATEMENTS = 20;

const TABLES = ["agent_stats", "agent_stats_errors"] as const;

export const expireSql = (table: string) => `DELETE FROM ${table} WHERE rowid IN (
  SELECT rowid FROM ${table} WHERE bucket_ms = ?1 AND bucket_start < ?2 ORDER BY bucket_start LIMIT ?3)`;

export async function expireStatsBuckets(
  db: Db,
  input: { now: number; batchRows?: number; maxStatements?: number },
): Promise<{ deleted: number; statements: number; complete: boolean }> {
  const batchRows = input.batchRows ?? STATS_EXPIRY_BATCH_ROWS;
  const maxStatements = input.maxStatements ?? STATS_EXPIRY_MAX_STATEMENTS;
  let deleted = 0;
  let statements = 0;
  for (const table of TABLES) {
    for (const [bucketMs, keepMs] of Object.entries(STATS_KEEP_MS)) {
      for (;;) {
        if (statements >= maxStatements) return { deleted, statements, complete: false };
        if (statements > 0) await pauseBetweenSteps();
        const result = await db.$client
          .prepare(expireSql(table))
          .bind(Number(bucketMs), input.now - keepMs, batchRows)
          .run();
        statements += 1;
        const changes = result.meta.changes ?? 0;
        deleted += changes;
        if (changes < batchRows) break;
      }
    }
  }
  return { deleted, statements, complete: true };
}
