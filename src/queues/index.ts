// The worker's queue handler: routes each batch to the consumer of the queue it came from.
import { createDb } from "../db/client";
import type { Env } from "../env";
import { handleUsageBatch } from "../services/metering/usage-queue";
import { handleDeadLetterBatch, handleDeployBatch } from "./deploy-jobs";

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
    return handleUsageBatch(batch, { db: createDb(env.DB) }, { deadLetter: isDeadLetterQueue(batch.queue) });
  }
  if (isDeadLetterQueue(batch.queue)) return handleDeadLetterBatch(batch, env);
  return handleDeployBatch(batch, env, ctx);
}
