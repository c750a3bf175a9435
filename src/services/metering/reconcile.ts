// Usage reconciliation: keeps billing_usage equal to what metrics_events (the source of truth)
// says, incrementally and in bounded steps. Run by the cron.
//
// What drift can there be? The usage consumer (record-events.ts) inserts events and increments
// billing_usage from exactly the rows it inserted, in one D1 batch (one transaction), so in normal
// operation the two never disagree. They disagree only when something writes one table without
// the other: an event row inserted by another path (an import, a restore, a hand-written fix), a
// counter edited, deleted or corrupted by hand or by a future bug, a counter row with no events
// behind it at all. The repair must therefore not trust billing_usage for anything, and must
// reach every counter, not only those with new events.
//
// How, without reading a month of events per run:
// - usage_verified_totals holds, per (user, month, agent), the usage of every event up to a
//   watermark: the highest metrics_events rowid already added. Each step adds the next slice of
//   at most `sliceEvents` rows (a rowid range: metrics_events is append-only and never deleted
//   from, so rowids grow with insertion order and a committed row below the watermark can never
//   appear later) and moves the watermark, in one transaction. These totals come from the events
//   alone, so they are exact for everything below the watermark whatever billing_usage holds.
// - When a step ends with the watermark at the newest event (inside the same transaction, so no
//   consumer write can slip in between), the totals are the truth, and billing_usage is corrected
//   to them for a bounded set of keys: first the totals that grew since they were last compared
//   (`dirty`: new events, possibly never counted), then the next `sweepKeys` billing_usage rows
//   after a cursor that walks billing_usage's unique index and wraps around (a corrupted counter,
//   or a counter with no events behind it, which goes back to zero). The difference is written
//   in the same transaction it was computed in, so a concurrent increment is never lost.
// - While the watermark trails the newest event (a backlog larger than one run's budget), nothing
//   is corrected: the totals are not yet the whole truth, and the consumer's own increments keep
//   billing_usage right in the meantime.
//
// The totals rely on rowids only growing: events are never inserted below the watermark. Expiry
// (retention.ts) deletes old events only outside the months still being billed, long after the
// watermark passed them, and the totals keep counting them, as billing_usage does. So starting
// over (below) after an expiry ran would undercount the expired months: only do it for months
// whose events are all still there. The totals cover the seven usage counters; billing_usage's
// telemetry_events (the telemetry quota's count) is kept by the consumer's write alone.
// Starting over (the totals themselves damaged): delete usage_verified_totals and set the state's
// event_rowid to 0 in one transaction; the runs rebuild the totals in slices and correct nothing
// until they have caught up.
//
// Every statement reads at most `sliceEvents` events or `sweepKeys` keys through an index, so no
// statement's cost grows with the month; a run makes at most `maxSteps` such transactions.
import type { Db } from "../../db/client";
import { pauseBetweenSteps } from "../../lib/pause";
import { EVENT_PERIOD, USAGE_SUMS } from "./record-events";

/**
 * Events added to the verified totals per step (one D1 batch). A smaller slice keeps each batch,
 * and so the longest wait of any other query behind it, short; 100 steps still take 50,000 events
 * per run (600,000 an hour at the 5-minute schedule). B8 (`npm run bench:scale`, 1M events under
 * `wrangler dev`): a step of 500 is a ~96 ms batch on a warm database; the first run after the
 * local D1 opens a freshly filled database takes up to 1.4 s a step (cold pages);
 * bench/results/2026-12-01-b8-scale.md.
 */
export const RECONCILE_SLICE_EVENTS = 500;
/** billing_usage keys compared per step, for the dirty totals and again for the sweep. */
export const RECONCILE_SWEEP_KEYS = 500;
/** Steps per run: at most maxSteps × sliceEvents events and 2 × maxSteps × sweepKeys keys. */
export const RECONCILE_MAX_STEPS = 100;

export type ReconcileOptions = { sliceEvents?: number; sweepKeys?: number; maxSteps?: number; now?: number };
export type ReconcileReport = {
  /** Events added to the verified totals by this run. */
  events: number;
  /** billing_usage rows written (corrected or created). */
  corrected: number;
  /** The watermark reached the newest event. */
  caughtUp: boolean;
  /** Totals that grew and were not yet compared with billing_usage (left for the next run; counted up to 1,000). */
  dirtyLeft: number;
  /** The sweep passed the last billing_usage key during this run (every key was compared). */
  sweptToEnd: boolean;
};

const COUNTERS = [
  "requests",
  "errors",
  "duration_ms_total",
  "bytes_in",
  "bytes_out",
  "input_tokens",
  "output_tokens",
  "model_input_tokens",
  "model_output_tokens",
  "egress_requests",
] as const;
const KEY = "user_id, period_key, agent_id";
const STATE = "(SELECT event_rowid FROM usage_reconcile_state WHERE id = 'usage')";
const CAUGHT_UP = `${STATE} >= (SELECT COALESCE(MAX(rowid), 0) FROM metrics_events)`;
const CURSOR = `(COALESCE(s.cursor_user_id, ''), COALESCE(s.cursor_period_key, ''), COALESCE(s.cursor_agent_id, ''))`;
const differs = (a: string, b: string) => COUNTERS.map((c) => `${a}.${c} IS NOT ${b}.${c}`).join(" OR ");

// Parameters: ?1 slice size (events), ?2 keys per correction, ?9 now.
const ENSURE_STATE_SQL = `INSERT INTO usage_reconcile_state (id, event_rowid, updated_at) VALUES ('usage', 0, ?9)
  ON CONFLICT (id) DO NOTHING`;

const WATERMARK_SQL = "SELECT event_rowid AS watermark FROM usage_reconcile_state WHERE id = 'usage'";

/** The next slice of events (a rowid range) added to the verified totals. */
const ADD_SLICE_SQL = `
  INSERT INTO usage_verified_totals (${KEY}, ${COUNTERS.join(", ")}, dirty)
  SELECT user_id, ${EVENT_PERIOD} AS period, agent_id, ${USAGE_SUMS}, 1
  FROM metrics_events
  WHERE rowid > ${STATE} AND rowid <= ${STATE} + ?1
  GROUP BY user_id, period, agent_id
  ON CONFLICT (${KEY}) DO UPDATE SET
    ${COUNTERS.map((c) => `${c} = ${c} + excluded.${c}`).join(", ")}, dirty = 1`;

const ADVANCE_WATERMARK_SQL = `
  UPDATE usage_reconcile_state
  SET event_rowid = MAX(event_rowid, MIN(event_rowid + ?1, (SELECT COALESCE(MAX(rowid), 0) FROM metrics_events))),
    updated_at = ?9
  WHERE id = 'usage'`;

const DIRTY_SLICE = `SELECT * FROM usage_verified_totals WHERE dirty = 1 ORDER BY ${KEY} LIMIT ?2`;

/** Dirty totals (caught up: exact) written over billing_usage: created, or corrected where they differ. */
const CORRECT_DIRTY_SQL = `
  INSERT INTO billing_usage (id, ${KEY}, ${COUNTERS.join(", ")}, updated_at)
  SELECT 'use_' || lower(hex(randomblob(13))), ${KEY}, ${COUNTERS.join(", ")}, ?9
  FROM (${DIRTY_SLICE})
  WHERE ${CAUGHT_UP}
  ON CONFLICT (${KEY}) DO UPDATE SET
    ${COUNTERS.map((c) => `${c} = excluded.${c}`).join(", ")}, updated_at = excluded.updated_at
  WHERE ${differs("billing_usage", "excluded")}`;

const CLEAR_DIRTY_SQL = `
  UPDATE usage_verified_totals SET dirty = 0
  WHERE ${CAUGHT_UP} AND dirty = 1 AND (${KEY}) IN (SELECT ${KEY} FROM (${DIRTY_SLICE}))`;

/** The sweep's next keys of billing_usage, after the cursor, in the unique index's order. */
const SWEEP_SLICE = `
  SELECT b.id, b.user_id, b.period_key, b.agent_id FROM billing_usage b, usage_reconcile_state s
  WHERE s.id = 'usage' AND (b.user_id, b.period_key, b.agent_id) > ${CURSOR}
  ORDER BY b.user_id, b.period_key, b.agent_id LIMIT ?2`;

/** Those keys set to the verified totals (zero where no event stands behind them). */
const SWEEP_SQL = `
  UPDATE billing_usage SET ${COUNTERS.map((c) => `${c} = t.${c}`).join(", ")}, updated_at = ?9
  FROM (
    SELECT k.id, ${COUNTERS.map((c) => `COALESCE(v.${c}, 0) AS ${c}`).join(", ")}
    FROM (${SWEEP_SLICE}) k
    LEFT JOIN usage_verified_totals v
      ON v.user_id = k.user_id AND v.period_key = k.period_key AND v.agent_id = k.agent_id
  ) t
  WHERE ${CAUGHT_UP} AND billing_usage.id = t.id AND (${differs("billing_usage", "t")})`;

/** The cursor moves to the last key swept; past the end it goes back to the start (NULL). */
const ADVANCE_CURSOR_SQL = `
  UPDATE usage_reconcile_state AS st SET (cursor_user_id, cursor_period_key, cursor_agent_id) = (
    SELECT b.user_id, b.period_key, b.agent_id FROM billing_usage b, usage_reconcile_state s
    WHERE s.id = 'usage' AND (b.user_id, b.period_key, b.agent_id) > ${CURSOR}
    ORDER BY b.user_id, b.period_key, b.agent_id LIMIT 1 OFFSET ?2 - 1)
  WHERE st.id = 'usage' AND ${CAUGHT_UP}`;

const STATUS_SQL = `
  SELECT event_rowid AS watermark, cursor_user_id IS NULL AS atStart, ${CAUGHT_UP} AS caughtUp,
    (SELECT COUNT(*) FROM (SELECT 1 FROM usage_verified_totals WHERE dirty = 1 LIMIT 1000)) AS dirtyLeft
  FROM usage_reconcile_state WHERE id = 'usage'`;

type Status = { watermark: number; atStart: number; caughtUp: number; dirtyLeft: number };

/** Every statement one step runs, in order (exported for the query-plan test). */
export const RECONCILE_STEP_SQL = [
  ENSURE_STATE_SQL,
  WATERMARK_SQL,
  ADD_SLICE_SQL,
  ADVANCE_WATERMARK_SQL,
  CORRECT_DIRTY_SQL,
  CLEAR_DIRTY_SQL,
  SWEEP_SQL,
  ADVANCE_CURSOR_SQL,
  STATUS_SQL,
];

/**
 * One reconciliation run: steps (one D1 batch each) until the watermark has caught up and no
 * dirty totals are left, or `maxSteps` steps. What is left is picked up by the next run.
 */
export async function reconcileUsage(db: Db, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const sliceEvents = opts.sliceEvents ?? RECONCILE_SLICE_EVENTS;
  const sweepKeys = opts.sweepKeys ?? RECONCILE_SWEEP_KEYS;
  const maxSteps = opts.maxSteps ?? RECONCILE_MAX_STEPS;
  const d1 = db.$client;
  const report: ReconcileReport = { events: 0, corrected: 0, caughtUp: false, dirtyLeft: 0, sweptToEnd: false };
  for (let step = 0; step < maxSteps; step++) {
    const params = [sliceEvents, sweepKeys, null, null, null, null, null, null, opts.now ?? Date.now()];
    const results = await d1.batch(
      RECONCILE_STEP_SQL.map((s) => d1.prepare(s).bind(...params.slice(0, highestParameter(s)))),
    );
    const before = (results[1]?.results[0] as { watermark: number } | undefined)?.watermark ?? 0;
    const status = results.at(-1)?.results[0] as Status;
    const rowsWritten = (i: number) => results[i]?.meta.changes ?? 0;
    report.corrected += rowsWritten(RECONCILE_STEP_SQL.indexOf(CORRECT_DIRTY_SQL));
    report.corrected += rowsWritten(RECONCILE_STEP_SQL.indexOf(SWEEP_SQL));
    report.events += status.watermark - before;
    report.caughtUp = status.caughtUp === 1;
    report.dirtyLeft = status.dirtyLeft;
    if (report.caughtUp && status.atStart === 1) report.sweptToEnd = true;
    if (report.caughtUp && status.dirtyLeft === 0) break;
    await pauseBetweenSteps();
  }
  return report;
}

/** D1 wants exactly as many bound values as the statement's highest numbered parameter. */
export function highestParameter(statement: string): number {
  return Math.max(0, ...[...statement.matchAll(/\?(\d+)/g)].map((m) => Number(m[1])));
}
