// Agents: a user's named deployable unit. Deleted agents are tombstoned (deleted_at) so that
// usage and audit history keep their references; every read filters them out.
import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { createdAt, updatedAt } from "./columns";
import { users } from "./users";

export const agents = sqliteTable(
  "agents",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    description: text("description"),
    status: text("status", { enum: ["active", "disabled"] })
      .notNull()
      .default("active"),
    activeDeploymentId: text("active_deployment_id"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    deletedAt: integer("deleted_at"),
    // When the deleted agent's secrets (and its deployments' snapshots and unshared artifacts) were
    // purged, DELETED_AGENT_GRACE_MS after deleted_at (services/cleanup/purge.ts).
    purgedAt: integer("purged_at"),
  },
  (t) => [
    // Names are unique per user among live agents; a deleted agent frees its name.
    uniqueIndex("agents_user_name_live_uq").on(t.userId, t.name).where(sql`${t.deletedAt} IS NULL`),
    // List pages: WHERE user_id = ? AND deleted_at IS NULL AND id < ? ORDER BY id DESC.
    index("agents_user_id_idx").on(t.userId, t.id),
    // The purge's queue: deleted agents not yet purged, oldest deletion first. Purged tombstones
    // leave the index, so the purge never walks the (ever-growing) list of old tombstones.
    index("agents_purge_due_idx").on(t.deletedAt).where(sql`${t.deletedAt} IS NOT NULL AND ${t.purgedAt} IS NULL`),
  ],
);

export type AgentRow = typeof agents.$inferSelect;
