// Consumer of the usage-events queue: each message is one invocation's gateway measurement.
// A whole batch (up to 100 messages) becomes two D1 statements (see record-events.ts), which is
// what keeps metering far below one D1 write per invocation.
import { z } from "zod";
import { createDb } from "../../db/client";
import type { Env } from "../../env";
import { describeError, logError, logWarn } from "../../lib/logger";
import { backoffSeconds } from "../../queues/backoff";
import { type MetricsEventInput, recordEvents } from "./record-events";

const nullableInt = z.number().int().nonnegative().nullable();

export const UsageEventSchema = z.object({
  id: z.string().min(1).max(64),
  userId: z.string().min(1).max(64),
  agentId: z.string().min(1).max(64),
  deploymentId: z.string().min(1).max(64),
  source: z.enum(["gateway", "telemetry"]),
  dedupeKey: z.string().min(1).max(200),
  eventId: z.string().max(200).nullable(),
  traceId: z.string().max(200).nullable(),
  runtimeProvider: z.string().max(32),
  kind: z.string().max(32),
  ts: z.number().int().nonnegative(),
  durationMs: nullableInt,
  status: z.string().max(16).nullable(),
  errorCode: z.string().max(64).nullable(),
  inputTokens: nullableInt,
  outputTokens: nullableInt,
  bytesIn: nullableInt,
  bytesOut: nullableInt,
  streaming: z.boolean().nullable(),
  receivedAt: z.number().int().nonnegative(),
}) satisfies z.ZodType<MetricsEventInput>;

/** Deliveries a dead-lettered usage batch gets before its events are given up. */
export const DEAD_LETTER_ATTEMPTS = 5;

export async function handleUsageBatch(batch: MessageBatch<unknown>, env: Env, opts: { deadLetter?: boolean } = {}) {
  const valid: Array<{ message: Message<unknown>; event: MetricsEventInput }> = [];
  for (const message of batch.messages) {
    const parsed = UsageEventSchema.safeParse(message.body);
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
      createDb(env.DB),
      valid.map((v) => v.event),
    );
    for (const v of valid) v.message.ack();
  } catch (err) {
    if (opts.deadLetter) {
      // The dead-letter queue retries too (D1 may be down for minutes); only after that are the
      // events given up, loudly: reconciliation cannot recover measurements that never landed.
      for (const v of valid) {
        if (v.message.attempts < DEAD_LETTER_ATTEMPTS) {
          v.message.retry({ delaySeconds: backoffSeconds(v.message.attempts, { baseSeconds: 60, maxSeconds: 600 }) });
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
    for (const v of valid)
      v.message.retry({ delaySeconds: backoffSeconds(v.message.attempts, { baseSeconds: 2, maxSeconds: 300 }) });
  }
}
