// Lifecycle webhooks (Standard Webhooks): a user's receiver endpoints, each delivery of an event
// to one of them, and the usage thresholds already announced per period (so each is sent once).
// The signing secret is stored only as an AES-256-GCM envelope whose additional data names the
// endpoint (crypto/aad.ts webhookSecretAad); during a rotation the previous secret keeps signing
// until previous_secret_expires_at.
import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { createdAt, updatedAt } from "./columns";
import { users } from "./users";

export const WEBHOOK_ENDPOINT_STATUSES = ["enabled", "disabled"] as const;
export type WebhookEndpointStatus = (typeof WEBHOOK_ENDPOINT_STATUSES)[number];

export const webhookEndpoints = sqliteTable(
  "webhook_endpoints",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    url: text("url").notNull(),
    /** JSON array of the event types the endpoint receives. */
    events: text("events", { mode: "json" }).notNull().$type<string[]>(),
    status: text("status", { enum: WEBHOOK_ENDPOINT_STATUSES }).notNull().default("enabled"),
    /** Why the platform disabled it (410 Gone, failing for days), shown to the user. */
    disabledReason: text("disabled_reason"),
    disabledAt: integer("disabled_at"),
    secretCiphertext: text("secret_ciphertext").notNull(),
    previousSecretCiphertext: text("previous_secret_ciphertext"),
    previousSecretExpiresAt: integer("previous_secret_expires_at"),
    /** First failed attempt since the last success; null while the endpoint answers 2xx. */
    failingSince: integer("failing_since"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [index("webhook_endpoints_user_idx").on(t.userId, t.id)],
);

export type WebhookEndpointRow = typeof webhookEndpoints.$inferSelect;

export const WEBHOOK_DELIVERY_STATUSES = ["pending", "succeeded", "failed"] as const;
export type WebhookDeliveryStatus = (typeof WEBHOOK_DELIVERY_STATUSES)[number];

export const webhookDeliveries = sqliteTable(
  "webhook_deliveries",
  {
    /** `msg_…`: the `webhook-id` header, the same on every attempt of this delivery. */
    id: text("id").primaryKey(),
    userId: text("user_id").notNull(),
    endpointId: text("endpoint_id")
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    eventType: text("event_type").notNull(),
    /** The exact body every attempt sends (signed as is). */
    payload: text("payload").notNull(),
    status: text("status", { enum: WEBHOOK_DELIVERY_STATUSES }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    lastAttemptAt: integer("last_attempt_at"),
    /** The receiver's HTTP status on the last attempt; null when it did not answer. */
    lastResponseStatus: integer("last_response_status"),
    /** Why the last attempt failed (timeout, refused address…), never the receiver's body. */
    lastError: text("last_error"),
    nextAttemptAt: integer("next_attempt_at"),
    /** Set by an attempt's conditional claim; a duplicate queue delivery sees it and skips. */
    claimedAt: integer("claimed_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("webhook_deliveries_endpoint_idx").on(t.endpointId, t.id),
    // The publisher's backlog count per endpoint (services/webhooks/publish.ts).
    index("webhook_deliveries_endpoint_status_idx").on(t.endpointId, t.status),
    index("webhook_deliveries_created_idx").on(t.createdAt),
    // The cron's sweep for pending deliveries whose queue message is overdue.
    index("webhook_deliveries_pending_idx").on(t.status, t.nextAttemptAt),
  ],
);

export type WebhookDeliveryRow = typeof webhookDeliveries.$inferSelect;

/** A usage threshold (percent of the period's invocation quota) already announced to a user. */
export const webhookUsageThresholds = sqliteTable(
  "webhook_usage_thresholds",
  {
    userId: text("user_id").notNull(),
    periodKey: text("period_key").notNull(),
    percent: integer("percent").notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.periodKey, t.percent] })],
);
