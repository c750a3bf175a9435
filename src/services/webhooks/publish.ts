// Publishing a lifecycle event: one delivery row per enabled endpoint of the user that subscribes
// to the event's type, then one queue message per delivery (the webhook-deliveries queue's
// consumer sends them, deliver.ts). This is the one entry point every producer calls (deploy job,
// activation, usage thresholds, rollouts). It never throws: a lifecycle change must not fail
// because its announcement could not be queued; that is logged instead.
import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { webhookDeliveries, webhookEndpoints } from "../../db/schema";
import { describeError, logError } from "../../lib/logger";
import { newDeliveryRow } from "./endpoints";
import { MAX_EVENT_PAYLOAD_BYTES, MAX_PENDING_DELIVERIES_PER_ENDPOINT, type WebhookEvent } from "./events";
import type { WebhookQueue } from "./queue";

export type PublishDeps = { db: Db; webhookQueue: WebhookQueue };

/** Queues `event` for each subscribed endpoint; returns how many deliveries were queued. */
export async function publishEvent(
  deps: PublishDeps,
  event: WebhookEvent,
  opts: { now?: number } = {},
): Promise<{ queued: number }> {
  const now = opts.now ?? Date.now();
  try {
    const subscribed = await deps.db
      .select({
        id: webhookEndpoints.id,
        userId: webhookEndpoints.userId,
        // Counted on the (endpoint, status) index and never past the cap. Written out: drizzle
        // prints a single-table query's columns unqualified, and `id` here must be the endpoint's.
        backlog: sql<number>`(SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = webhook_endpoints.id AND d.status = 'pending' LIMIT ${MAX_PENDING_DELIVERIES_PER_ENDPOINT}))`,
      })
      .from(webhookEndpoints)
      .where(
        and(
          eq(webhookEndpoints.userId, event.userId),
          eq(webhookEndpoints.status, "enabled"),
          sql`EXISTS (SELECT 1 FROM json_each(${webhookEndpoints.events}) WHERE json_each.value = ${event.type})`,
        ),
      );
    const endpoints = subscribed.filter((e) => e.backlog < MAX_PENDING_DELIVERIES_PER_ENDPOINT);
    for (const full of subscribed.filter((e) => e.backlog >= MAX_PENDING_DELIVERIES_PER_ENDPOINT)) {
      logError("webhook_backlog_full", { userId: event.userId, endpointId: full.id, type: event.type });
    }
    if (endpoints.length === 0) return { queued: 0 };
    const rows = endpoints.map((endpoint) => newDeliveryRow(endpoint, event.type, event.data, now));
    if (rows[0]!.payload.length > MAX_EVENT_PAYLOAD_BYTES) {
      logError("webhook_event_too_large", { userId: event.userId, type: event.type, bytes: rows[0]!.payload.length });
      return { queued: 0 };
    }
    // One statement per row in one batch: a multi-row insert would pass D1's 100 bound parameters.
    const [first, ...rest] = rows.map((row) => deps.db.insert(webhookDeliveries).values(row));
    await deps.db.batch([first!, ...rest]);
    // Rows first: a message always finds its delivery. If the send fails the rows stay `pending`
    // and the cron's requeue sweep (requeueStalledDeliveries) sends them later.
    await deps.webhookQueue.sendBatch(rows.map((row) => ({ body: { deliveryId: row.id } })));
    return { queued: rows.length };
  } catch (err) {
    logError("webhook_publish_failed", { userId: event.userId, type: event.type, error: describeError(err) });
    return { queued: 0 };
  }
}
