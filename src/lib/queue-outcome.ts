// How one queue message ends, as decided by the pipeline that owns the message (a deploy, an
// agent-script cleanup). Pipelines return an outcome; the queue router applies it and logs it. The
// usage queue is the exception: its consumer writes a whole batch in one statement and settles the
// batch's messages together (services/metering/usage-queue.ts).

export type QueueOutcome<Result extends string = string> =
  | { action: "ack"; result: Result; error?: string }
  | { action: "retry"; delaySeconds: number; result: Result; error?: string };

/** The part of a queue `Message` an outcome is applied to. */
export type SettleableMessage = Pick<Message<unknown>, "ack" | "retry">;

export function settleMessage(message: SettleableMessage, outcome: QueueOutcome): void {
  if (outcome.action === "ack") message.ack();
  else message.retry({ delaySeconds: outcome.delaySeconds });
}
