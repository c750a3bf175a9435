// Consumer of the usage-events queue and its dead-letter queue: each message is one metrics
// event (the gateway's measurement of an invocation, sent by record-invocation.ts), checked
// against MetricsEventSchema. A whole batch (up to 100 messages) becomes three or four D1 statements (see
// record-events.ts), which is what keeps metering far below one D1 write per invocation.
import type { Db } from "../../db/client";
import { backoffSeconds } from "../../lib/backoff";
import { describeError, logError, logWarn } from "../../lib/logger";
import { type MetricsEvent, MetricsEventSchema } from "./event";
import { recordEvents } from "./record-events";

/** Backoff of a batch that failed to land in D1. */
export const USAGE_RETRY = { baseSeconds: 2, maxSeconds: 300 };
/** Backoff on the dead-letter queue: longer, as its batches already failed every usage-queue delivery. */
export const DEAD_LETTER_RETRY = { baseSeconds: 60, maxSeconds: 600 };
/** Deliveries a dead-lettered usage batch gets before its events are given up. */
export const DEAD_LETTER_ATTEMPTS = 5;

export async function handleUsageBatch(
  batch: MessageBatch<unknown>,
  deps: {
    db: Db;
    /**
     * Runs once the batch's events are stored (e.g. usage-threshold webhooks). Its failure is
     * logged and never retries the batch: the events are already counted.
     */
    onRecorded?: (events: MetricsEvent[]) => Promise<void>;
  },
  opts: { deadLetter?: boolean } = {},
) {
  const valid: Array<{ message: Message<unknown>; event: MetricsEvent }> = [];
  for (const message of batch.messages) {
    const parsed = MetricsEventSchema.safeParse(message.body);
    if (parsed.success) {
      valid.push({ message, event: parsed.data });
    } else {
      // A malformed message can never succeed: log it and drop it instead of retrying forever.
      logWarn("usage_event_invalid", { queue: batch.queue, messageId: message.id });
      message.ack();
    }
  }
  if (valid.length === 0) return;
  try {
    await recordEvents(
      deps.db,
      valid.map((v) => v.event),
    );
    for (const v of valid) v.message.ack();
  } catch (err) {
    handleFailure(batch, valid, err, opts);
    return;
  }
  if (deps.onRecorded) {
    await deps
      .onRecorded(valid.map((v) => v.event))
      .catch((err) => logError("usage_batch_after_record_failed", { queue: batch.queue, error: describeError(err) }));
  }
}

function handleFailure(
  batch: MessageBatch<unknown>,
  valid: Array<{ message: Message<unknown>; event: MetricsEvent }>,
  err: unknown,
  opts: { deadLetter?: boolean },
) {
  if (opts.deadLetter) {
    // The dead-letter queue retries too (D1 may be down for minutes); only after that are the
    // events given up, loudly: reconciliation cannot recover measurements that never landed.
    for (const v of valid) {
      if (v.message.attempts < DEAD_LETTER_ATTEMPTS) {
        v.message.retry({ delaySeconds: backoffSeconds(v.message.attempts, DEAD_LETTER_RETRY) });
      } else {
        v.message.ack();
      }
    }
    const lost = valid.filter((v) => v.message.attempts >= DEAD_LETTER_ATTEMPTS).length;
    logError(lost > 0 ? "usage_events_lost" : "usage_dead_letter_retry", {
      queue: batch.queue,
      count: valid.length,
      lost,
      error: describeError(err),
    });
    return;
  }
  logError("usage_batch_failed", { queue: batch.queue, count: valid.length, error: describeError(err) });
  for (const v of valid) v.message.retry({ delaySeconds: backoffSeconds(v.message.attempts, USAGE_RETRY) });
}
