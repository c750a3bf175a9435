// Writes metrics events and the usage they add, as three statements for one D1 batch no matter
// how many events (four when one is a failed invocation): the rows travel as one JSON parameter
// (json_each), and billing_usage and the per-agent stats buckets (services/stats/aggregate.ts)
// are incremented from exactly the rows this write inserted (tagged with `ingest_batch`), so an
// event delivered twice is stored once and counted once.
import { getTableColumns } from "drizzle-orm";
import type { Db } from "../../db/client";
import { metricsEvents } from "../../db/schema";
import { newId } from "../../lib/ids";
import { addStatsStatements } from "../stats/aggregate";
import { METRICS_EVENT_FIELDS, type MetricsEvent } from "./event";

// [SQL column, event field] for every field of the event; the writer sets ingest_batch itself.
const EVENT_COLUMNS = METRICS_EVENT_FIELDS.map((field) => [getTableColumns(metricsEvents)[field].name, field] as const);

const INSERT_EVENTS_SQL = `
  INSERT INTO metrics_events (${EVENT_COLUMNS.map(([c]) => c).join(", ")}, ingest_batch)
  SELECT ${EVENT_COLUMNS.map(([, f]) => `e.value ->> '$.${f}'`).join(", ")}, ?2
  FROM json_each(?1) AS e
  WHERE true
  ON CONFLICT (deployment_id, source, dedupe_key) DO NOTHING`;

const USAGE_COLUMNS = `(id, user_id, period_key, agent_id, requests, errors, duration_ms_total, bytes_in, bytes_out,
  input_tokens, output_tokens, model_input_tokens, model_output_tokens, egress_requests, telemetry_events, updated_at)`;

/**
 * The ten usage counters (billing_usage column order) summed over metrics_events rows. A preview
 * (kind `preview`, a deployment invoked by id) counts like an invocation: it runs the agent's code
 * on the platform just the same, and it was admitted against the same quota.
 */
export const USAGE_SUMS = `
      COALESCE(SUM(source = 'gateway' AND kind IN ('invoke', 'preview')), 0),
      COALESCE(SUM(source = 'gateway' AND kind IN ('invoke', 'preview') AND status = 'error'), 0),
      COALESCE(SUM(CASE WHEN source = 'gateway' AND kind IN ('invoke', 'preview') THEN duration_ms END), 0),
      COALESCE(SUM(CASE WHEN source = 'gateway' AND kind IN ('invoke', 'preview') THEN bytes_in END), 0),
      COALESCE(SUM(CASE WHEN source = 'gateway' AND kind IN ('invoke', 'preview') THEN bytes_out END), 0),
      COALESCE(SUM(CASE WHEN source = 'telemetry' THEN input_tokens END), 0),
      COALESCE(SUM(CASE WHEN source = 'telemetry' THEN output_tokens END), 0),
      COALESCE(SUM(CASE WHEN source = 'egress' THEN input_tokens END), 0),
      COALESCE(SUM(CASE WHEN source = 'egress' THEN output_tokens END), 0),
      COALESCE(SUM(source = 'egress'), 0)`;

/** The UTC month (YYYY-MM) of a metrics_events row. */
export const EVENT_PERIOD = "strftime('%Y-%m', ts / 1000, 'unixepoch')";

/**
 * Usage per (user, UTC month, agent) over the metrics_events rows matching `where`: requests,
 * errors, duration and bytes come from the gateway's own measurements of invocations (kind
 * `invoke`, and `preview` for a deployment invoked by id; deploy smoke tests, kind `smoke_test`, are recorded but never billed or counted against
 * the quota), tokens and the event count from verified telemetry, model tokens and the egress
 * request count from the egress door. `?1` in `where`/elsewhere is reserved by callers; the update time is `?9`.
 */
export function usageAggregateSelect(where: string): string {
  return `
    SELECT 'use_' || lower(hex(randomblob(13))), user_id, ${EVENT_PERIOD} AS period,
      agent_id,
      ${USAGE_SUMS},
      COALESCE(SUM(source = 'telemetry'), 0),
      ?9
    FROM metrics_events
    WHERE ${where}
    GROUP BY user_id, period, agent_id`;
}

export const USAGE_INSERT = `INSERT INTO billing_usage ${USAGE_COLUMNS}`;

const ADD_USAGE_SQL = `${USAGE_INSERT}
  ${usageAggregateSelect("ingest_batch = ?2")}
  ON CONFLICT (user_id, period_key, agent_id) DO UPDATE SET
    requests = requests + excluded.requests,
    errors = errors + excluded.errors,
    duration_ms_total = duration_ms_total + excluded.duration_ms_total,
    bytes_in = bytes_in + excluded.bytes_in,
    bytes_out = bytes_out + excluded.bytes_out,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    model_input_tokens = model_input_tokens + excluded.model_input_tokens,
    model_output_tokens = model_output_tokens + excluded.model_output_tokens,
    egress_requests = egress_requests + excluded.egress_requests,
    telemetry_events = telemetry_events + excluded.telemetry_events,
    updated_at = excluded.updated_at`;

/**
 * The prepared statements that store `events` and add them to billing_usage and to the per-agent
 * stats buckets (services/stats/aggregate.ts), for one D1 batch.
 */
export function recordEventsStatements(d1: D1Database, events: MetricsEvent[]): D1PreparedStatement[] {
  const batchTag = newId("event");
  const now = Date.now();
  // Typed as the table's rows so that an event field the table cannot hold fails the type check.
  const rows: Array<typeof metricsEvents.$inferInsert> = events;
  return [
    d1.prepare(INSERT_EVENTS_SQL).bind(JSON.stringify(rows), batchTag),
    // ?1 is unused here but bound so the numbered parameters line up with the insert.
    d1.prepare(ADD_USAGE_SQL).bind(null, batchTag, null, null, null, null, null, null, now),
    ...addStatsStatements(d1, batchTag, now, events),
  ];
}

export async function recordEvents(db: Db, events: MetricsEvent[]): Promise<{ inserted: number }> {
  if (events.length === 0) return { inserted: 0 };
  const [inserted] = await db.$client.batch(recordEventsStatements(db.$client, events));
  return { inserted: inserted?.meta.changes ?? 0 };
}
