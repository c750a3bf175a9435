// Append-only invocation events: the gateway's own measurements (source 'gateway') and the
// verified telemetry user workers report (source 'telemetry'), and the egress door's measurement of
// each outbound request (source 'egress'). Deduped per deployment.
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const metricsEvents = sqliteTable(
  "metrics_events",
  {
    id: text("id").primaryKey(),
    userId: text("user_id").notNull(),
    agentId: text("agent_id").notNull(),
    deploymentId: text("deployment_id").notNull(),
    source: text("source", { enum: ["gateway", "telemetry", "egress"] }).notNull(),
    // eventId when given, else traceId: the dedupe key within a deployment and source.
    dedupeKey: text("dedupe_key").notNull(),
    eventId: text("event_id"),
    traceId: text("trace_id"),
    runtimeProvider: text("runtime_provider").notNull(),
    kind: text("kind").notNull(),
    ts: integer("ts").notNull(),
    durationMs: integer("duration_ms"),
    status: text("status"),
    errorCode: text("error_code"),
    inputTokens: integer("input_tokens"),
    outputTokens: integer("output_tokens"),
    bytesIn: integer("bytes_in"),
    bytesOut: integer("bytes_out"),
    streaming: integer("streaming", { mode: "boolean" }),
    // Egress events: the destination host, and for platform model calls the provider and model.
    host: text("host"),
    provider: text("provider"),
    model: text("model"),
    receivedAt: integer("received_at").notNull(),
    // Tag of the write that inserted the row: usage is incremented from exactly the rows one
    // write inserted, so a redelivered event (ignored by the dedupe index) is never counted twice.
    ingestBatch: text("ingest_batch"),
  },
  (t) => [
    uniqueIndex("metrics_events_dedupe_uq").on(t.deploymentId, t.source, t.dedupeKey),
    index("metrics_events_agent_ts_idx").on(t.agentId, t.ts),
    index("metrics_events_user_ts_idx").on(t.userId, t.ts),
    index("metrics_events_ingest_batch_idx").on(t.ingestBatch),
    index("metrics_events_ts_idx").on(t.ts),
  ],
);
