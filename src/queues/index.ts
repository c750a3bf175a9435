// The worker's queue handler: routes each batch to the consumer of the queue it came from.
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
  if (isUsageQueue(batch.queue)) return handleUsageBatch(batch, env, { deadLetter: isDeadLetterQueue(batch.queue) });
  if (isDeadLetterQueue(batch.queue)) return handleDeadLetterBatch(batch, env);
  return handleDeployBatch(batch, env, ctx);
}
