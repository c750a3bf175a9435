// Each agent's egress policy: which hosts its outbound fetch() may reach. No row means the default
// (allowlist, empty). Read live by the egress door (services/egress/), not snapshotted per deployment.
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const agentEgressPolicies = sqliteTable("agent_egress_policies", {
  agentId: text("agent_id").primaryKey(),
  userId: text("user_id").notNull(),
  mode: text("mode", { enum: ["deny", "allowlist", "open"] }).notNull(),
  /** JSON array of host patterns (`api.example.com`, `*.example.com`). */
  allow: text("allow").notNull().default("[]"),
  updatedAt: integer("updated_at").notNull(),
});
