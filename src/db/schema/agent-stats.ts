// Per-agent health, pre-aggregated by the usage consumer (services/stats/aggregate.ts) in the same
// D1 batch that stores the metrics events: one row per agent, deployment and time bucket (a
// minute for the 1 h window, an hour for 24 h and 7 d), so GET …/stats reads at most 60 or 168
// rows per deployment instead of scanning metrics_events. Durations are kept as a fixed
// log-scale histogram (DURATION_BOUNDS_MS) from which percentiles are read.
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * Exclusive upper bounds (ms) of the duration histogram's buckets: about √2 apart (integers, so no
 * bucket is empty by construction), up to ~17 minutes; bucket i holds durations in
 * [DURATION_BOUNDS_MS[i-1], DURATION_BOUNDS_MS[i]), the last one everything above.
 */
export const DURATION_BOUNDS_MS = [
  1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, 362, 512, 724, 1024, 1448, 2048, 2896, 4096, 5793, 8192,
  11585, 16384, 23170, 32768, 46341, 65536, 92682, 131072, 185364, 262144, 370728, 524288, 741455, 1048576,
] as const;

/** Number of histogram buckets (one per bound, plus the overflow bucket). */
export const DURATION_BUCKETS = DURATION_BOUNDS_MS.length + 1;

/** SQL column name of histogram bucket i (h00 … h40). */
export const durationColumn = (i: number) => `h${String(i).padStart(2, "0")}`;

const histogramColumns = Object.fromEntries(
  Array.from({ length: DURATION_BUCKETS }, (_, i) => [
    durationColumn(i),
    integer(durationColumn(i)).notNull().default(0),
  ]),
);

export const agentStats = sqliteTable(
  "agent_stats",
  {
    userId: text("user_id").notNull(),
    agentId: text("agent_id").notNull(),
    deploymentId: text("deployment_id").notNull(),
    /** The bucket's width: 60000 (a minute) or 3600000 (an hour). */
    bucketMs: integer("bucket_ms").notNull(),
    /** Start of the bucket, ms since epoch (a multiple of bucket_ms). */
    bucketStart: integer("bucket_start").notNull(),
    invocations: integer("invocations").notNull().default(0),
    errors: integer("errors").notNull().default(0),
    durationMsTotal: integer("duration_ms_total").notNull().default(0),
    durationMsMin: integer("duration_ms_min"),
    durationMsMax: integer("duration_ms_max"),
    inputTokens: integer("input_tokens").notNull().default(0),
    outputTokens: integer("output_tokens").notNull().default(0),
    modelInputTokens: integer("model_input_tokens").notNull().default(0),
    modelOutputTokens: integer("model_output_tokens").notNull().default(0),
    ...histogramColumns,
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("agent_stats_bucket_uq").on(t.agentId, t.bucketMs, t.bucketStart, t.deploymentId),
    index("agent_stats_expiry_idx").on(t.bucketMs, t.bucketStart),
  ],
);

/** Failed invocations per error code, bucketed like agent_stats. */
export const agentStatsErrors = sqliteTable(
  "agent_stats_errors",
  {
    userId: text("user_id").notNull(),
    agentId: text("agent_id").notNull(),
    deploymentId: text("deployment_id").notNull(),
    bucketMs: integer("bucket_ms").notNull(),
    bucketStart: integer("bucket_start").notNull(),
    errorCode: text("error_code").notNull(),
    count: integer("count").notNull().default(0),
  },
  (t) => [
    uniqueIndex("agent_stats_errors_bucket_uq").on(t.agentId, t.bucketMs, t.bucketStart, t.deploymentId, t.errorCode),
    index("agent_stats_errors_expiry_idx").on(t.bucketMs, t.bucketStart),
  ],
);
