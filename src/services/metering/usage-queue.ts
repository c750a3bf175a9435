// Consumer of the usage-events queue and its dead-letter queue. A message is one metrics event
// (the gateway's measurement of an invocation or an egress request, sent by record-invocation.ts,
// checked against MetricsEventSchema) or one verified telemetry report (up to 100 events, sent by
// services/telemetry/enqueue.ts, checked against its schema). The batch's events are written in
// chunks of at most USAGE_WRITE_MAX_EVENTS, each three or four D1 statements (see
// record-events.ts) — what keeps metering far below one D1 write per event: a batch of 100
// measurements is one chunk, a batch of 100 full telemetry reports a hundred. A chunk D1 refuses
// is written again one message at a time, so that one message D1 will never take is retried alone
// while the rest of its chunk is stored (isolateCulprits).
import type { Db } from "../../db/client";
import { isDatabaseUnavailable } from "../../db/unavailable";
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
  const failed: Failed[] = [];
  // Set once D1 looks unable to take any write: from then on nothing more is tried.
  let down: { err: unknown } | undefined;
  let writes = 0;
  const write = async (group: Valid[]) => {
    // A batch of full telemetry reports is a hundred writes: requests run between two of them
    // (lib/pause.ts says why a timer), not after the whole batch.
    if (writes++ > 0) await pauseBetweenSteps();
    const events = group.flatMap((v) => v.events);
    await recordEvents(deps.db, events);
    for (const v of group) v.message.ack();
    recorded.push(...events);
  };

  for (const chunk of chunks(valid)) {
    if (down) {
      // A failing D1 is not asked again for each chunk; the chunks already written stay acknowledged.
      for (const v of chunk) failed.push({ v, err: down.err, culprit: false });
      continue;
    }
    try {
      await write(chunk);
    } catch (err) {
      if (isDatabaseUnavailable(err)) {
        down = { err };
        for (const v of chunk) failed.push({ v, err, culprit: false });
      } else if (chunk.length === 1) {
        // D1 refused this one message's write: it is the culprit; the next chunks still go.
        failed.push({ v: chunk[0] as Valid, err, culprit: true });
      } else {
        down = await isolateCulprits(chunk, err, write, failed);
      }
    }
  }

  if (failed.length > 0) settleFailed(batch, failed, opts);
  if (deps.onRecorded && recorded.length > 0) {
    await deps
      .onRecorded(recorded)
      .catch((err) => logError("usage_batch_after_record_failed", { queue: batch.queue, error: describeError(err) }));
  }
}

/**
 * A chunk of several messages that D1 refused (not an outage) is written again one message at a
 * time, so one message D1 will never take (a poisoned row fails the chunk's whole transaction)
 * does not send the others to the dead-letter queue with it. This is the one extra pass: every
 * message is written at most twice, in its chunk and alone. A message already stored by a
 * previous attempt is dropped by the write's dedupe (record-events.ts), so it is never counted
 * twice. When no message of the chunk lands alone, D1 is refusing every write, not one message:
 * the chunk is retried whole and the caller stops writing (the returned `down`).
 */
async function isolateCulprits(
  chunk: Valid[],
  chunkErr: unknown,
  write: (group: Valid[]) => Promise<void>,
  failed: Failed[],
): Promise<{ err: unknown } | undefined> {
  const refused: Failed[] = [];
  let landed = 0;
  let down: { err: unknown } | undefined;
  for (const v of chunk) {
    if (down) {
      failed.push({ v, err: down.err, culprit: false });
      continue;
    }
    try {
      await write([v]);
      landed++;
    } catch (err) {
      if (isDatabaseUnavailable(err)) {
        down = { err };
        failed.push({ v, err, culprit: false });
      } else {
        refused.push({ v, err, culprit: true });
      }
    }
  }
  if (landed === 0 && !down) {
    for (const r of refused) failed.push({ ...r, culprit: false });
    return { err: chunkErr };
  }
  failed.push(...refused);
  return down;
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

type Failed = {
  v: Valid;
  err: unknown;
  /** D1 refused this message alone; otherwise it was not stored because D1 failed every write. */
  culprit: boolean;
};

/**
 * Retries the messages not stored, with backoff: the usage queue's, or on the dead-letter queue
 * its longer one until DEAD_LETTER_ATTEMPTS, after which their events are given up, loudly
 * (reconciliation cannot recover measurements that never landed). Each culprit gets one log line
 * naming it (message id, deployment, counts; never its content); the rest one line together.
 */
function settleFailed(batch: MessageBatch<unknown>, failed: Failed[], opts: { deadLetter?: boolean }) {
  const policy = opts.deadLetter ? DEAD_LETTER_RETRY : USAGE_RETRY;
  const givesUp = (v: Valid) => opts.deadLetter === true && v.message.attempts >= DEAD_LETTER_ATTEMPTS;
  for (const { v } of failed) {
    if (givesUp(v)) v.message.ack();
    else v.message.retry({ delaySeconds: backoffSeconds(v.message.attempts, policy) });
  }
  for (const { v, err } of failed.filter((f) => f.culprit)) {
    const [first] = v.events;
    logError(givesUp(v) ? "usage_events_lost" : "usage_message_rejected", {
      queue: batch.queue,
      messageId: v.message.id,
      attempts: v.message.attempts,
      deploymentId: first?.deploymentId,
      source: first?.source,
      events: v.events.length,
      lost: givesUp(v) ? 1 : 0,
      lostEvents: givesUp(v) ? v.events.length : 0,
      error: describeError(err),
    });
  }
  const rest = failed.filter((f) => !f.culprit).map((f) => f.v);
  if (rest.length === 0) return;
  const err = failed.find((f) => !f.culprit)?.err;
  if (!opts.deadLetter) {
    logError("usage_batch_failed", {
      queue: batch.queue,
      count: rest.length,
      events: eventCount(rest),
      error: describeError(err),
    });
    return;
  }
  const lost = rest.filter(givesUp);
  logError(lost.length > 0 ? "usage_events_lost" : "usage_dead_letter_retry", {
    queue: batch.queue,
    count: rest.length,
    events: eventCount(rest),
    lost: lost.length,
    lostEvents: eventCount(lost),
    error: describeError(err),
  });
}

const eventCount = (valid: Valid[]) => valid.reduce((n, v) => n + v.events.length, 0);
