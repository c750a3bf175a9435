// The worker's queue handler: routes each batch to the consumer of the queue it came from.
import { createDb } from "../db/client";
import { type Env, getConfig } from "../env";
import type { MetricsEvent } from "../services/metering/event";
import { handleUsageBatch } from "../services/metering/usage-queue";
import { announceUsageThresholds } from "../services/webhooks/usage-thresholds";
import { handleDeadLetterBatch, handleDeployBatch } from "./deploy-jobs";
import { handleWebhookBatch, isWebhookQueue } from "./webhooks";

/** Dead-letter queues are named `<queue>-dlq` (wrangler.toml). */
export function isDeadLetterQueue(queue: string): boolean {
  return queue.endsWith("-dlq");
}

/** The usage queue (`usage-events`) and its dead-letter queue carry invocation measurements. */
function isUsageQueue(queue: string): boolean {
  return queue.startsWith("usage-events");
}

export async function handleQueue(batch: MessageBatch<unknown>, env: Env, ctx: ExecutionContext): Promise<void> {
  // Metering and the dead-letter queue need only D1, not the full services: they keep working
  // while a bad setting stops deploys.
  if (isUsageQueue(batch.queue)) {
    const db = createDb(env.DB);
    return handleUsageBatch(
      batch,
      { db, onRecorded: (events) => announceThresholds(env, db, events) },
      { deadLetter: isDeadLetterQueue(batch.queue) },
    );
  }
  if (isWebhookQueue(batch.queue)) return handleWebhookBatch(batch, env);
  if (isDeadLetterQueue(batch.queue)) return handleDeadLetterBatch(batch, env);
  return handleDeployBatch(batch, env, ctx);
}

/**
 * `usage.threshold` webhooks after a metering batch landed. It needs the tiers' limits (the
 * configuration); while the configuration is bad, metering goes on and the announcement waits for
 * the next batch (the thresholds are recomputed from billing_usage each time).
 */
async function announceThresholds(env: Env, db: ReturnType<typeof createDb>, events: MetricsEvent[]): Promise<void> {
  const invocations = events.filter((e) => e.source === "gateway" && (e.kind === "invoke" || e.kind === "preview"));
  if (invocations.length === 0) return;
  const config = await getConfig(env);
  await announceUsageThresholds({ db, webhookQueue: env.WEBHOOK_QUEUE, tierLimits: config.tierLimits }, invocations);
}
