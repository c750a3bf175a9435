// The webhook-deliveries queue: each message is one delivery, sent by services/webhooks/deliver.ts,
// which decides the outcome (ack, or retry with its own backoff); this module parses, applies the
// outcome and writes one log line per message (the delivery id and result, never the payload).
import { createDb } from "../db/client";
import { type Env, getConfig } from "../env";
import { describeError, type LogFields, logError, logInfo, logWarn } from "../lib/logger";
import { type QueueOutcome, settleMessage } from "../lib/queue-outcome";
import { processDelivery } from "../services/webhooks/deliver";
import { WebhookDeliveryJobSchema } from "../services/webhooks/queue";

/** Retry of a message whose attempt could not even start (D1 or the configuration unavailable). */
const UNAVAILABLE_RETRY_SECONDS = 30;

export function isWebhookQueue(queue: string): boolean {
  return queue.startsWith("webhook-deliveries");
}

export async function handleWebhookBatch(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  let config: Awaited<ReturnType<typeof getConfig>>;
  try {
    config = await getConfig(env);
  } catch (err) {
    logError("webhook_batch_config_error", { queue: batch.queue, error: describeError(err) });
    for (const msg of batch.messages) msg.retry({ delaySeconds: UNAVAILABLE_RETRY_SECONDS });
    return;
  }
  const deps = {
    db: createDb(env.DB),
    keyring: config.keyring,
    environment: config.environment,
    policy: config.webhooks,
  };
  await Promise.all(
    batch.messages.map(async (msg) => {
      const parsed = WebhookDeliveryJobSchema.safeParse(msg.body);
      if (!parsed.success) {
        logWarn("webhook_delivery_invalid", { queue: batch.queue, messageId: msg.id });
        msg.ack();
        return;
      }
      const started = Date.now();
      let outcome: QueueOutcome;
      try {
        outcome = await processDelivery(deps, parsed.data);
      } catch (err) {
        outcome = {
          action: "retry",
          result: "error",
          delaySeconds: UNAVAILABLE_RETRY_SECONDS,
          error: describeError(err),
        };
      }
      settleMessage(msg, outcome);
      const fields: LogFields = {
        deliveryId: parsed.data.deliveryId,
        messageId: msg.id,
        result: outcome.result,
        retryInSeconds: outcome.action === "retry" ? outcome.delaySeconds : undefined,
        error: outcome.error,
        durationMs: Date.now() - started,
      };
      if (outcome.action === "retry" || outcome.error !== undefined) logWarn("webhook_delivery", fields);
      else logInfo("webhook_delivery", fields);
    }),
  );
}
