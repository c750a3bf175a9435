// Consumer of the usage-events queue and its dead-letter queue. A message is one metrics event
// (the gateway's measurement of an invocation or an egress request, sent by record-invocation.ts,
// checked against MetricsEventSchema) or one verified telemetry report (up to 100 events, sent by
// services/telemetry/enqueue.ts, checked against its schema). The batch's events are written in
// chunks of at most USAGE_WRITE_MAX_EVENTS, each three or four D1 statements (see
// record-events.ts) — what keeps metering far below one D1 write per event: a batch of 100
// measurements is one chunk, a batch of 100 full telemetry reports a hundred.
import type { Db } from "../../db/client";
import { backoffSeconds } from "../../lib/backoff";
import { describeError, logError, logWarn } from "../../lib/logger";
import { pauseBetweenSteps } from "../../lib/pause";
import { TelemetryReportMessageSchema, telemetryMetricsEvents } from "../telemetry/enqueue";
import { type MetricsEvent, MetricsEventSchema } from "./event";
import { recordEvents } from "./record-events";

/**
 * Most events one D1 write carries: what a full batch of gateway measurements holds, so a write is
 * never larger than before telemetry reports shared the queue. Larger writes would save a few
 * statements but hold local D1 (and the requests waiting behind it) longer: measured in
 * bench/results/2026-12-01-b4-telemetry-queue.md.
 */
export const USAGE_WRITE_MAX_EVENTS = 100;

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
  const valid: Valid[] = [];
  for (const message of batch.messages) {
    const events = eventsOf(message.body);
    if (events) {
      valid.push({ message, events });
    } else {
      // A malformed message can never succeed: log it and drop it instead of retrying forever.
      logWarn("usage_event_invalid", { queue: batch.queue, messageId: message.id });
      message.ack();
    }
  }
  const recorded: MetricsEvent[] = [];
  const pending = chunks(valid);
  for (let i = 0; i < pending.length; i++) {
    const chunk = pending[i] as Valid[];
    const events = chunk.flatMap((v) => v.events);
    // A batch of full telemetry reports is a hundred writes: requests run between two of them
    // (lib/pause.ts says why a timer), not after the whole batch.
    if (i > 0) await pauseBetweenSteps();
    try {
      await recordEvents(deps.db, events);
    } catch (err) {
      // This chunk and the ones not yet tried are retried (a failing D1 is not asked again for
      // each); the chunks already written stay acknowledged.
      handleFailure(batch, pending.slice(i).flat(), err, opts);
      break;
    }
    for (const v of chunk) v.message.ack();
    recorded.push(...events);
  }
  if (deps.onRecorded && recorded.length > 0) {
    await deps
      .onRecorded(recorded)
      .catch((err) => logError("usage_batch_after_record_failed", { queue: batch.queue, error: describeError(err) }));
  }
}

type Valid = { message: Message<unknown>; events: MetricsEvent[] };

/** A message's metrics events, or undefined when it is neither a metrics event nor a telemetry report. */
function eventsOf(body: unknown): MetricsEvent[] | undefined {
  const event = MetricsEventSchema.safeParse(body);
  if (event.success) return [event.data];
  const report = TelemetryReportMessageSchema.safeParse(body);
  if (report.success) return telemetryMetricsEvents(report.data);
  return undefined;
}

/** Consecutive messages grouped so that a group holds at most USAGE_WRITE_MAX_EVENTS events. */
function chunks(valid: Valid[]): Valid[][] {
  const out: Valid[][] = [];
  let current: Valid[] = [];
  let size = 0;
  for (const v of valid) {
    if (current.length > 0 && size + v.events.length > USAGE_WRITE_MAX_EVENTS) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(v);
    size += v.events.length;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function handleFailure(batch: MessageBatch<unknown>, valid: Valid[], err: unknown, opts: { deadLetter?: boolean }) {
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
      events: eventCount(valid),
      lost,
      lostEvents: eventCount(valid.filter((v) => v.message.attempts >= DEAD_LETTER_ATTEMPTS)),
      error: describeError(err),
    });
    return;
  }
  logError("usage_batch_failed", {
    queue: batch.queue,
    count: valid.length,
    events: eventCount(valid),
    error: describeError(err),
  });
  for (const v of valid) v.message.retry({ delaySeconds: backoffSeconds(v.message.attempts, USAGE_RETRY) });
}

const eventCount = (valid: Valid[]) => valid.reduce((n, v) => n + v.events.length, 0);
