// What the usage reconciliation (services/metering/reconcile.ts) has verified so far.
// usage_verified_totals: per (user, UTC month, agent), the usage of every metrics_events row up to
// the watermark, built only from the events (never from billing_usage). `dirty` marks totals that
// grew since billing_usage was last compared with them.
// usage_reconcile_state: one row ('usage'): the watermark (the highest metrics_events rowid added
// to the totals) and the sweep cursor (the last billing_usage key compared).
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const usageVerifiedTotals = sqliteTable(
  "usage_verified_totals",
  {
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
    dirty: integer("dirty").notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.periodKey, t.agentId] }),
    index("usage_verified_totals_dirty_idx").on(t.userId, t.periodKey, t.agentId).where(sql`dirty = 1`),
  ],
);

export const usageReconcileState = sqliteTable("usage_reconcile_state", {
  id: text("id").primaryKey(),
  eventRowid: integer("event_rowid").notNull().default(0),
  cursorUserId: text("cursor_user_id"),
  cursorPeriodKey: text("cursor_period_key"),
  cursorAgentId: text("cursor_agent_id"),
  updatedAt: integer("updated_at").notNull(),
});
