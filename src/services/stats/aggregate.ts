// Pre-aggregation of per-agent health (agent_stats, agent_stats_errors), written by the usage
// consumer in the same D1 batch as the metrics events it summarises (metering/record-events.ts).
// Like billing_usage, the buckets are incremented from exactly the rows that write inserted (its
// `ingest_batch` tag), so a redelivered event is counted once, and whole batches cost two
// statements however many events they hold. Each event lands in two buckets: its minute and its
// hour. What counts as an invocation matches the usage report: the gateway's own measurement of
// kind `invoke` or `preview`; tokens come from verified telemetry, model tokens from the egress door.
import { DURATION_BOUNDS_MS, DURATION_BUCKETS, durationColumn } from "../../db/schema/agent-stats";

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;

const INVOCATION = "m.source = 'gateway' AND m.kind IN ('invoke', 'preview')";

/** The histogram bucket index of m.duration_ms (NULL when the row is not a measured invocation). */
const BUCKET_OF = `CASE WHEN NOT (${INVOCATION}) OR m.duration_ms IS NULL THEN NULL ${DURATION_BOUNDS_MS.map(
  (bound, i) => `WHEN m.duration_ms < ${bound} THEN ${i}`,
).join(" ")} ELSE ${DURATION_BUCKETS - 1} END`;

const HISTOGRAM = Array.from({ length: DURATION_BUCKETS }, (_, i) => durationColumn(i));

// The minute and the hour of every row of the write tagged ?1.
const TAGGED_ROWS = `
  FROM metrics_events AS m
  CROSS JOIN (SELECT ${MINUTE_MS} AS g UNION ALL SELECT ${HOUR_MS}) AS granularity
  WHERE m.ingest_batch = ?1 AND (${INVOCATION} OR m.source IN ('telemetry', 'egress'))`;

const ADD_STATS_SQL = `
  INSERT INTO agent_stats (user_id, agent_id, deployment_id, bucket_ms, bucket_start, invocations, errors,
    duration_ms_total, duration_ms_min, duration_ms_max, input_tokens, output_tokens, model_input_tokens,
    model_output_tokens, ${HISTOGRAM.join(", ")}, updated_at)
  SELECT user_id, agent_id, deployment_id, g, bucket_start, invocations, errors, duration_ms_total,
    duration_ms_min, duration_ms_max, input_tokens, output_tokens, model_input_tokens, model_output_tokens,
    ${HISTOGRAM.join(", ")}, ?2
  FROM (
    SELECT m.user_id, m.agent_id, m.deployment_id, granularity.g, m.ts - (m.ts % granularity.g) AS bucket_start,
      COALESCE(SUM(${INVOCATION}), 0) AS invocations,
      COALESCE(SUM(${INVOCATION} AND m.status = 'error'), 0) AS errors,
      COALESCE(SUM(CASE WHEN ${INVOCATION} THEN m.duration_ms END), 0) AS duration_ms_total,
      MIN(CASE WHEN ${INVOCATION} THEN m.duration_ms END) AS duration_ms_min,
      MAX(CASE WHEN ${INVOCATION} THEN m.duration_ms END) AS duration_ms_max,
      COALESCE(SUM(CASE WHEN m.source = 'telemetry' THEN m.input_tokens END), 0) AS input_tokens,
      COALESCE(SUM(CASE WHEN m.source = 'telemetry' THEN m.output_tokens END), 0) AS output_tokens,
      COALESCE(SUM(CASE WHEN m.source = 'egress' THEN m.input_tokens END), 0) AS model_input_tokens,
      COALESCE(SUM(CASE WHEN m.source = 'egress' THEN m.output_tokens END), 0) AS model_output_tokens,
      ${HISTOGRAM.map((col, i) => `COALESCE(SUM((${BUCKET_OF}) = ${i}), 0) AS ${col}`).join(",\n      ")}
    ${TAGGED_ROWS}
    GROUP BY m.user_id, m.agent_id, m.deployment_id, granularity.g, bucket_start
  ) WHERE true
  ON CONFLICT (agent_id, bucket_ms, bucket_start, deployment_id) DO UPDATE SET
    invocations = invocations + excluded.invocations,
    errors = errors + excluded.errors,
    duration_ms_total = duration_ms_total + excluded.duration_ms_total,
    duration_ms_min = COALESCE(min(duration_ms_min, excluded.duration_ms_min), duration_ms_min, excluded.duration_ms_min),
    duration_ms_max = COALESCE(max(duration_ms_max, excluded.duration_ms_max), duration_ms_max, excluded.duration_ms_max),
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    model_input_tokens = model_input_tokens + excluded.model_input_tokens,
    model_output_tokens = model_output_tokens + excluded.model_output_tokens,
    ${HISTOGRAM.map((col) => `${col} = ${col} + excluded.${col}`).join(",\n    ")},
    updated_at = excluded.updated_at`;

const ADD_ERRORS_SQL = `
  INSERT INTO agent_stats_errors (user_id, agent_id, deployment_id, bucket_ms, bucket_start, error_code, count)
  SELECT m.user_id, m.agent_id, m.deployment_id, granularity.g, m.ts - (m.ts % granularity.g),
    COALESCE(m.error_code, 'unknown'), COUNT(*)
  ${TAGGED_ROWS} AND ${INVOCATION} AND m.status = 'error'
  GROUP BY m.user_id, m.agent_id, m.deployment_id, granularity.g, m.ts - (m.ts % granularity.g), COALESCE(m.error_code, 'unknown')
  ON CONFLICT (agent_id, bucket_ms, bucket_start, deployment_id, error_code) DO UPDATE SET
    count = count + excluded.count`;

/**
 * The statements (for the metering batch) that add the rows tagged `batchTag` to the stats
 * buckets. The error-code statement is left out when no event of the batch is a failed
 * measurement (the usual case): the batch's D1 statements are what benchmark B3 counts.
 */
export function addStatsStatements(
  d1: D1Database,
  batchTag: string,
  now: number,
  events: ReadonlyArray<{ source: string; status: string | null }>,
): D1PreparedStatement[] {
  const statements = [d1.prepare(ADD_STATS_SQL).bind(batchTag, now)];
  if (events.some((e) => e.source === "gateway" && e.status === "error")) {
    statements.push(d1.prepare(ADD_ERRORS_SQL).bind(batchTag));
  }
  return statements;
}
