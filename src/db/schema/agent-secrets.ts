// Write-only agent secrets: AES-256-GCM envelopes whose additional data binds them to
// (agent id, name), so a ciphertext copied to another row does not decrypt.
import { sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { agents } from "./agents";
import { createdAt, updatedAt } from "./columns";

export const agentSecrets = sqliteTable(
  "agent_secrets",
  {
    id: text("id").primaryKey(),
    userId: text("user_id").notNull(),
    agentId: text("agent_id")
      .notNull()
      .references(() => agents.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    ciphertext: text("ciphertext").notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex("agent_secrets_agent_name_uq").on(t.agentId, t.name)],
);
