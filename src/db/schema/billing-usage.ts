// Metered usage per user, UTC billing period (YYYY-MM) and agent. The user's total for a period
// is the sum of its agent rows.
import { integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { usageCounters } from "./columns";

export const billingUsage = sqliteTable(
  "billing_usage",
  {
    id: text("id").primaryKey(),
    userId: text("user_id").notNull(),
    periodKey: text("period_key").notNull(),
    agentId: text("agent_id").notNull(),
    ...usageCounters(),
    // Verified telemetry events stored (the per-period telemetry quota counts these). Not reduced
    // when metrics_events rows expire: usage history outlives the events behind it.
    telemetryEvents: integer("telemetry_events").notNull().default(0),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [uniqueIndex("billing_usage_user_period_agent_uq").on(t.userId, t.periodKey, t.agentId)],
);
