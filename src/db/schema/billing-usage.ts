// Metered usage per user, UTC billing period (YYYY-MM) and agent. The user's total for a period
// is the sum of its agent rows.
import { integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const billingUsage = sqliteTable(
  "billing_usage",
  {
    id: text("id").primaryKey(),
    userId: text("user_id").notNull(),
    periodKey: text("period_key").notNull(),
    agentId: text("agent_id").notNull(),
    requests: integer("requests").notNull().default(0),
    errors: integer("errors").notNull().default(0),
    durationMsTotal: integer("duration_ms_total").notNull().default(0),
    bytesIn: integer("bytes_in").notNull().default(0),
    bytesOut: integer("bytes_out").notNull().default(0),
    inputTokens: integer("input_tokens").notNull().default(0),
    outputTokens: integer("output_tokens").notNull().default(0),
    // Measured by the egress door from model providers' answers (platform keys), not reported by the agent.
    modelInputTokens: integer("model_input_tokens").notNull().default(0),
    modelOutputTokens: integer("model_output_tokens").notNull().default(0),
    // Outbound requests of the agent through the egress door (allowed or refused).
    egressRequests: integer("egress_requests").notNull().default(0),
    // Verified telemetry events stored (the per-period telemetry quota counts these). Not reduced
    // when metrics_events rows expire: usage history outlives the events behind it.
    telemetryEvents: integer("telemetry_events").notNull().default(0),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [uniqueIndex("billing_usage_user_period_agent_uq").on(t.userId, t.periodKey, t.agentId)],
);
