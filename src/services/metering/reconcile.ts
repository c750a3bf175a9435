// Recomputes a billing period's usage from metrics_events (the source of truth) and overwrites
// billing_usage with it, correcting any drift (a lost increment, a corrupted counter). Run by the
// cron for the current period, and for the previous one during the first day of a month.
import type { Db } from "../../db/client";
import { periodBounds } from "../../lib/time";
import { USAGE_INSERT, usageAggregateSelect } from "./record-events";

const RECOMPUTE_SQL = `${USAGE_INSERT}
  ${usageAggregateSelect("ts >= ?2 AND ts < ?3")}
  ON CONFLICT (user_id, period_key, agent_id) DO UPDATE SET
    requests = excluded.requests, errors = excluded.errors, duration_ms_total = excluded.duration_ms_total,
    bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens, updated_at = excluded.updated_at
  WHERE requests IS NOT excluded.requests OR errors IS NOT excluded.errors
    OR duration_ms_total IS NOT excluded.duration_ms_total OR bytes_in IS NOT excluded.bytes_in
    OR bytes_out IS NOT excluded.bytes_out OR input_tokens IS NOT excluded.input_tokens
    OR output_tokens IS NOT excluded.output_tokens`;

// Counters with no events behind them at all (e.g. corrupted) go back to zero.
const ZERO_ORPHANS_SQL = `
  UPDATE billing_usage SET requests = 0, errors = 0, duration_ms_total = 0, bytes_in = 0, bytes_out = 0,
    input_tokens = 0, output_tokens = 0, updated_at = ?9
  WHERE period_key = ?1
    AND (requests + errors + duration_ms_total + bytes_in + bytes_out + input_tokens + output_tokens) > 0
    AND NOT EXISTS (SELECT 1 FROM metrics_events m
      WHERE m.user_id = billing_usage.user_id AND m.agent_id = billing_usage.agent_id
        AND m.ts >= ?2 AND m.ts < ?3)`;

export async function reconcilePeriod(db: Db, periodKey: string): Promise<{ corrected: number }> {
  const { start, end } = periodBounds(periodKey);
  const params = [periodKey, start, end, null, null, null, null, null, Date.now()];
  // One batch is one transaction: a concurrent increment is either fully inside the
  // recomputation or applied on top of it, never lost or doubled.
  const results = await db.$client.batch([
    db.$client.prepare(RECOMPUTE_SQL).bind(...params),
    db.$client.prepare(ZERO_ORPHANS_SQL).bind(...params),
  ]);
  return { corrected: results.reduce((n, r) => n + (r.meta.changes ?? 0), 0) };
}
