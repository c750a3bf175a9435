// Idempotency-Key records: one per (principal, route, key), claimed by the first request and
// holding its final answer for 24 hours. Expired rows are purged by the cron in batches.
import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { createdAt } from "./columns";

export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    /** `<user id>:<api key id or "jwt">`. */
    principal: text("principal").notNull(),
    /** `METHOD /concrete/path`. */
    route: text("route").notNull(),
    key: text("key").notNull(),
    /** Hex SHA-256 of the request body. */
    fingerprint: text("fingerprint").notNull(),
    state: text("state", { enum: ["running", "done"] }).notNull(),
    /** Random per claim: only the request that holds the claim may complete or release it. */
    claimId: text("claim_id").notNull(),
    /** While running: after this time the claim is presumed abandoned and may be taken over. */
    lockedUntil: integer("locked_until").notNull(),
    statusCode: integer("status_code"),
    headers: text("headers", { mode: "json" }).$type<Record<string, string>>(),
    body: text("body"),
    createdAt: createdAt(),
    expiresAt: integer("expires_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.principal, t.route, t.key] }),
    index("idempotency_keys_expires_idx").on(t.expiresAt),
  ],
);

export type IdempotencyRow = typeof idempotencyKeys.$inferSelect;
