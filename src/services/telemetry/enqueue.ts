// Hands a verified telemetry report to the usage queue, the same queue (and consumer,
// services/metering/usage-queue.ts) that carries the gateway's own invocation measurements: one
// message per event, so the consumer's batches stay at most 100 events (one D1 batch of three or
// four statements, record-events.ts), dedupe happens there (ON CONFLICT on the dedupe index) and
// billing_usage grows by exactly the rows inserted. Unlike the gateway's measurements, a report is
// not held back to join a batch: the answer promises the events are durably queued, so it waits
// for the queue's acknowledgement and a failure reaches the caller (503, retry).
import { utf8 } from "../../crypto/encoding";
import { newId } from "../../lib/ids";
import { type MetricsEvent, metricsEvent } from "../metering/event";
import { dedupeKeyOf, type TelemetryEvent } from "./event";

/** The usage queue as telemetry uses it (the USAGE_QUEUE binding). */
export type TelemetryQueue = {
  sendBatch(messages: Iterable<MessageSendRequest<MetricsEvent>>): Promise<unknown>;
};

/** Cloudflare Queues limits: messages per sendBatch, bytes per sendBatch, bytes per message. */
export const QUEUE_BATCH_MAX_MESSAGES = 100;
export const QUEUE_BATCH_MAX_BYTES = 256 * 1024;
export const QUEUE_MESSAGE_MAX_BYTES = 128 * 1024;
/**
 * Bytes added to each message's JSON size for the queue's own encoding (it counts the serialized
 * message, whose strings take at most their UTF-8 length): a margin so a batch we size is never
 * refused.
 */
const PER_MESSAGE_OVERHEAD_BYTES = 256;

/** The metrics events a verified report becomes (source `telemetry`, owner from the deployment row). */
export function telemetryMetricsEvents(
  deployment: { deploymentId: string; userId: string; agentId: string },
  events: TelemetryEvent[],
  receivedAt: number,
): MetricsEvent[] {
  return events.map((e) =>
    metricsEvent({
      id: newId("event", receivedAt),
      userId: deployment.userId,
      agentId: deployment.agentId,
      deploymentId: deployment.deploymentId,
      source: "telemetry",
      dedupeKey: dedupeKeyOf(e),
      eventId: e.eventId,
      traceId: e.traceId,
      runtimeProvider: e.runtimeProvider,
      kind: e.kind,
      ts: e.ts,
      durationMs: e.durationMs,
      status: e.status,
      errorCode: e.errorCode,
      inputTokens: e.usage?.inputTokens,
      outputTokens: e.usage?.outputTokens,
      receivedAt,
    }),
  );
}

/**
 * Splits messages into sendBatch calls within the Queues limits. A report's events are bounded
 * (event.ts: at most 100, ids of at most 128 characters), so a report is in practice one call —
 * tests/telemetry-queue.test.ts checks the largest possible report — but the split keeps a
 * future larger bound from being refused by the queue.
 */
export function queueBatches(events: MetricsEvent[]): MetricsEvent[][] {
  const batches: MetricsEvent[][] = [];
  let current: MetricsEvent[] = [];
  let bytes = 0;
  for (const event of events) {
    const size = utf8.encode(JSON.stringify(event)).byteLength + PER_MESSAGE_OVERHEAD_BYTES;
    if (size > QUEUE_MESSAGE_MAX_BYTES)
      throw new Error(`a telemetry message of ${size} bytes exceeds the queue's limit`);
    if (current.length > 0 && (current.length >= QUEUE_BATCH_MAX_MESSAGES || bytes + size > QUEUE_BATCH_MAX_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(event);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/**
 * Resolves once the queue has accepted every event; rejects if it refused any. Batches are sent
 * one after another: if a later one fails, the earlier ones stay queued, and the caller's retry
 * of the whole report is harmless (the consumer drops the events already stored as duplicates).
 */
export async function enqueueTelemetryEvents(queue: TelemetryQueue, events: MetricsEvent[]): Promise<void> {
  for (const batch of queueBatches(events)) {
    await queue.sendBatch(batch.map((body) => ({ body })));
  }
}
