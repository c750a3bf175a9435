// The worker's queue handler: routes each batch to the consumer of the queue it came from.
import type { Env } from "../env";
import { handleDeadLetterBatch, handleDeployBatch } from "./deploy-consumer";

/** Dead-letter queues are named `<queue>-dlq` (wrangler.toml). */
export function isDeadLetterQueue(queue: string): boolean {
  return queue.endsWith("-dlq");
}

export async function handleQueue(batch: MessageBatch<unknown>, env: Env, ctx: ExecutionContext): Promise<void> {
  if (isDeadLetterQueue(batch.queue)) return handleDeadLetterBatch(batch, env);
  return handleDeployBatch(batch, env, ctx);
}
