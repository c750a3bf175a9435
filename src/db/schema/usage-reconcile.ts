// What the usage reconciliation (services/metering/reconcile.ts) has verified so far.
// usage_verified_totals: per (user, UTC month, agent), the usage of every metrics_events row up to
// the watermark, built only from the events (never from billing_usage). `dirty` marks totals that
// grew since billing_usage was last compared with them.
// usage_reconcile_state: one row ('usage'): the watermark (the highest metrics_events rowid added
// to the totals) and the sweep cursor (the last billing_usage key compared).
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { usageCounters } from "./columns";

export const usageVerifiedTotals = sqliteTable(
  "usage_verified_totals",
  {
    userId: text("user_id").notNull(),
    periodKey: text("period_key").notNull(),
    agentId: text("agent_id").notNull(),
    ...usageCounters(),
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
