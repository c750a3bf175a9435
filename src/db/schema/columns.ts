// Shared column helpers: every table stores times as integer milliseconds since the epoch (UTC).
import { integer } from "drizzle-orm/sqlite-core";

export const createdAt = () => integer("created_at").notNull();
export const updatedAt = () => integer("updated_at").notNull();

/**
 * The usage counters, as billing_usage keeps them and the reconciliation's verified totals mirror
 * them: a new counter is added here once.
 */
export const usageCounters = () => ({
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
});
