// Webhook request and response schemas (one source for validation and the OpenAPI document).
// Responses list their fields: the sealed secrets of a row never reach an answer.
import { z } from "@hono/zod-openapi";
import type { WebhookDeliveryRow, WebhookEndpointRow } from "../../../db/schema";
import { WEBHOOK_EVENT_TYPES } from "../../../services/webhooks/events";
import { MAX_WEBHOOK_URL_CHARS } from "../../../services/webhooks/receiver-url";

export const WebhookSchema = z
  .object({
    id: z.string().openapi({ example: "whe_01jd0000000000000000000000" }),
    url: z.string(),
    events: z.array(z.enum(WEBHOOK_EVENT_TYPES)),
    status: z.enum(["enabled", "disabled"]),
    disabledReason: z
      .string()
      .nullable()
      .openapi({ description: "Why the platform disabled it (a 410 Gone answer, or failing for 5 days)" }),
    disabledAt: z.number().int().nullable(),
    failingSince: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "First failed attempt since the last success; null while deliveries succeed" }),
    previousSecretExpiresAt: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "After a rotation: until when the previous secret also signs (ms since epoch)" }),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .openapi("Webhook");

export const WebhookWithSecret = z.object({
  webhook: WebhookSchema,
  secret: z
    .string()
    .openapi({ description: "The signing secret (`whsec_…`): in this answer only, never again", example: "whsec_…" }),
});

export const CreateWebhookBody = z.strictObject({
  url: z
    .string()
    .max(MAX_WEBHOOK_URL_CHARS, `url must be at most ${MAX_WEBHOOK_URL_CHARS} characters`)
    .openapi({ description: "An https URL that is not a private, loopback or link-local address" }),
  events: z
    .array(z.enum(WEBHOOK_EVENT_TYPES, { error: `each event is one of ${WEBHOOK_EVENT_TYPES.join(", ")}` }))
    .min(1, "give at least one event")
    .max(WEBHOOK_EVENT_TYPES.length, `at most ${WEBHOOK_EVENT_TYPES.length} events`),
});

export const WebhookIdParam = z.object({
  webhookId: z
    .string()
    .max(64)
    .openapi({ param: { name: "webhookId", in: "path" }, example: "whe_01jd0000000000000000000000" }),
});

export const DeliverySchema = z
  .object({
    id: z.string().openapi({ description: "The `webhook-id` header of every attempt", example: "msg_01jd…" }),
    webhookId: z.string(),
    eventType: z.string().openapi({ example: "deployment.active" }),
    status: z
      .enum(["pending", "succeeded", "failed"])
      .openapi({ description: "`pending`: queued or waiting for its next retry" }),
    attempts: z.number().int(),
    lastAttemptAt: z.number().int().nullable(),
    lastResponseStatus: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "The receiver's HTTP status on the last attempt; null when it did not answer" }),
    lastError: z.string().nullable(),
    nextAttemptAt: z.number().int().nullable(),
    createdAt: z.number().int(),
  })
  .openapi("WebhookDelivery");

export function toWebhookResponse(row: WebhookEndpointRow): z.infer<typeof WebhookSchema> {
  return {
    id: row.id,
    url: row.url,
    events: row.events as z.infer<typeof WebhookSchema>["events"],
    status: row.status,
    disabledReason: row.disabledReason,
    disabledAt: row.disabledAt,
    failingSince: row.failingSince,
    previousSecretExpiresAt: row.previousSecretExpiresAt,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export function toDeliveryResponse(row: WebhookDeliveryRow): z.infer<typeof DeliverySchema> {
  return {
    id: row.id,
    webhookId: row.endpointId,
    eventType: row.eventType,
    status: row.status,
    attempts: row.attempts,
    lastAttemptAt: row.lastAttemptAt,
    lastResponseStatus: row.lastResponseStatus,
    lastError: row.lastError,
    nextAttemptAt: row.status === "pending" ? row.nextAttemptAt : null,
    createdAt: row.createdAt,
  };
}
