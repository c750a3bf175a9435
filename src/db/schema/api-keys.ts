// Scoped API keys: long-lived credentials for CI. Only the key's SHA-256 is stored (the key is
// 32 random bytes, so a fast hash is enough: no dictionary to guess from); the plain key is shown
// once, when it is created. Revoked keys stay (revoked_at) so the audit trail keeps its target.
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { createdAt } from "./columns";
import { users } from "./users";

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** Hex SHA-256 of the full key. */
    keyHash: text("key_hash").notNull(),
    /** The key's first characters (`whk_` + 8), to recognise it in a list. */
    prefix: text("prefix").notNull(),
    scopes: text("scopes", { mode: "json" }).notNull().$type<string[]>(),
    /** Null: every agent of the user. */
    agentIds: text("agent_ids", { mode: "json" }).$type<string[]>(),
    createdAt: createdAt(),
    expiresAt: integer("expires_at").notNull(),
    lastUsedAt: integer("last_used_at"),
    revokedAt: integer("revoked_at"),
  },
  (t) => [uniqueIndex("api_keys_hash_uq").on(t.keyHash), index("api_keys_user_idx").on(t.userId, t.id)],
);

export type ApiKeyRow = typeof apiKeys.$inferSelect;
