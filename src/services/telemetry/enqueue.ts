// Hands a verified telemetry report to the usage queue, the queue (and consumer,
// services/metering/usage-queue.ts) that also carries the gateway's own invocation measurements.
// A report travels as one message — its verified events and the identity of the deployment that
// signed them — not one message per event: one queue write instead of up to 100 (Queues bills and,
// locally, serializes per message), and the consumer turns it into metrics events and stores them
// with the same dedupe (ON CONFLICT on the dedupe index) and metering as everything else. Unlike
// the gateway's measurements, a report is not held back to join a batch: the answer promises the
// events are durably queued, so it waits for the queue's acknowledgement and a failure reaches the
// caller (503, retry).
import { z } from "zod";
import { utf8 } from "../../crypto/encoding";
import { newId } from "../../lib/ids";
import { type MetricsEvent, metricsEvent } from "../metering/event";
import { dedupeKeyOf, TELEMETRY_MAX_BATCH_EVENTS, type TelemetryEvent, TelemetryEventSchema } from "./event";

const id = z.string().min(1).max(64);

/** A verified report as queued: the deployment's identity (from its row, not the body) and its events. */
export const TelemetryReportMessageSchema = z.strictObject({
  type: z.literal("telemetry_report"),
  userId: id,
  agentId: id,
  deploymentId: id,
  /** When the gateway accepted the report (ms since epoch): the events' `receivedAt`. */
  receivedAt: z.number().int().nonnegative(),
  events: z.array(TelemetryEventSchema).min(1).max(TELEMETRY_MAX_BATCH_EVENTS),
});

export type TelemetryReportMessage = z.infer<typeof TelemetryReportMessageSchema>;

/** The usage queue as telemetry uses it (the USAGE_QUEUE binding). */
export type TelemetryQueue = {
  sendBatch(messages: Iterable<MessageSendRequest<TelemetryReportMessage>>): Promise<unknown>;
};

/** Cloudflare Queues limit on one message. */
export const QUEUE_MESSAGE_MAX_BYTES = 128 * 1024;
/**
 * Bytes kept free in a message for the queue's own encoding (it counts the serialized message,
 * whose strings take at most their UTF-8 length): a margin so a message we size is never refused.
 */
const MESSAGE_OVERHEAD_BYTES = 1024;

type Deployment = { deploymentId: string; userId: string; agentId: string };

/**
 * The messages that carry a report: one, unless its JSON would exceed the Queues message limit,
 * then its events split over several. A report's signed body is at most 64 KiB
 * (TELEMETRY_MAX_BODY_BYTES) and its events re-serialize to no more than that, so in practice it
 * is always one message (tests/telemetry-queue.test.ts checks the largest possible report). The
 * split is a guard for a larger future bound, not a way around the Queues limits: a sendBatch is
 * itself bounded (256 KB in all), so a report needing more than two messages would still be
 * refused whole (a 503). `maxBytes` is for tests.
 */
export function telemetryReportMessages(
  deployment: Deployment,
  events: TelemetryEvent[],
  receivedAt: number,
  maxBytes = QUEUE_MESSAGE_MAX_BYTES,
): TelemetryReportMessage[] {
  const message: TelemetryReportMessage = {
    type: "telemetry_report",
    userId: deployment.userId,
    agentId: deployment.agentId,
    deploymentId: deployment.deploymentId,
    receivedAt,
    events,
  };
  if (utf8.encode(JSON.stringify(message)).byteLength + MESSAGE_OVERHEAD_BYTES <= maxBytes) return [message];
  if (events.length === 1) throw new Error("a telemetry event exceeds the queue's message limit");
  const half = Math.ceil(events.length / 2);
  return [
    ...telemetryReportMessages(deployment, events.slice(0, half), receivedAt, maxBytes),
    ...telemetryReportMessages(deployment, events.slice(half), receivedAt, maxBytes),
  ];
}

/**
 * Resolves once the queue has accepted every message of the report (one sendBatch); rejects if it
 * refused them.
 */
export async function enqueueTelemetryReport(
  queue: TelemetryQueue,
  deployment: Deployment,
  events: TelemetryEvent[],
  receivedAt: number,
): Promise<void> {
  await queue.sendBatch(telemetryReportMessages(deployment, events, receivedAt).map((body) => ({ body })));
}

/** The metrics events a queued report becomes (source `telemetry`, owner from the deployment row). */
export function telemetryMetricsEvents(message: Omit<TelemetryReportMessage, "type">): MetricsEvent[] {
  return message.events.map((e) =>
    metricsEvent({
      id: newId("event", message.receivedAt),
      userId: message.userId,
      agentId: message.agentId,
      deploymentId: message.deploymentId,
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
      receivedAt: message.receivedAt,
    }),
  );
}
