// The gateway's own measurement of each invocation (source 'gateway', deduped by request id).
// Called off the response path (ctx.waitUntil); it never throws. Measurements go to the usage
// queue, whose consumer meters whole batches into metrics_events, billing_usage and the stats
// buckets with three or four D1 statements (record-events.ts); only if the queue refuses them are they written
// directly.
// Sending is batched per isolate: a measurement joins the isolate's open batch, which is sent as
// one sendBatch when it holds USAGE_BATCH_MAX_EVENTS or USAGE_BATCH_WAIT_MS after it was opened,
// whichever comes first. Every request that joins a batch waits (in its waitUntil) on its own
// timer for the batch's deadline and then sends the batch unless another request already has, so
// a batch never depends on the request that opened it staying alive: metering is delayed by at
// most USAGE_BATCH_WAIT_MS, and nothing is lost that an unbatched send would have kept.
import type { Db } from "../../db/client";
import { newId } from "../../lib/ids";
import { describeError, logError, logWarn } from "../../lib/logger";
import { type MetricsEvent, metricsEvent } from "./event";
import { recordEvents } from "./record-events";

export type InvocationMeasurement = {
  requestId: string;
  userId: string;
  agentId: string;
  deploymentId: string;
  runtimeProvider: string;
  startedAt: number;
  durationMs: number;
  ok: boolean;
  /** The problem code the caller saw, or the stream's terminal error code. */
  errorCode?: string;
  bytesIn: number;
  bytesOut: number;
  streaming: boolean;
  /**
   * `invoke` (default); `preview` (an invocation of a deployment named by x-webhost-deployment:
   * billed and counted like `invoke`); `smoke_test` (a deploy's smoke test: recorded, never billed).
   */
  kind?: "invoke" | "preview" | "smoke_test";
};

export type UsageQueue = {
  send(event: MetricsEvent): Promise<unknown>;
  sendBatch?(messages: Iterable<MessageSendRequest<MetricsEvent>>): Promise<unknown>;
};

export type RecordInvocationDeps = {
  db: Db;
  usageQueue?: UsageQueue;
};

/** Queues accept at most 100 messages per sendBatch. */
export const USAGE_BATCH_MAX_EVENTS = 100;
export const USAGE_BATCH_WAIT_MS = 100;

type OpenBatch = {
  deps: RecordInvocationDeps & { usageQueue: UsageQueue };
  events: MetricsEvent[];
  /** When the batch is due (ms since epoch). */
  dueAt: number;
  /** Set once the batch is being sent; settles when it has been (never rejects). */
  sending: Promise<void> | undefined;
};

// The batch measurements currently join, per usage queue binding. Isolate-lifetime.
const openBatches = new Map<UsageQueue, OpenBatch>();

export function measurementEvent(m: InvocationMeasurement): MetricsEvent {
  return metricsEvent({
    id: newId("event", m.startedAt),
    userId: m.userId,
    agentId: m.agentId,
    deploymentId: m.deploymentId,
    source: "gateway",
    dedupeKey: m.requestId,
    traceId: m.requestId,
    runtimeProvider: m.runtimeProvider,
    kind: m.kind ?? "invoke",
    ts: m.startedAt,
    durationMs: m.durationMs,
    status: m.ok ? "ok" : "error",
    errorCode: m.errorCode,
    bytesIn: m.bytesIn,
    bytesOut: m.bytesOut,
    streaming: m.streaming,
    receivedAt: Date.now(),
  });
}

/** Resolves once the measurement has been handed to the queue (or written directly); never rejects. */
export function recordInvocation(deps: RecordInvocationDeps, m: InvocationMeasurement): Promise<void> {
  return recordMetricsEvent(deps, measurementEvent(m));
}

/**
 * Any gateway-made event (an invocation's measurement, an egress request's) joins the same
 * batching; resolves once it has been handed to the queue (or written directly); never rejects.
 */
export function recordMetricsEvent(deps: RecordInvocationDeps, event: MetricsEvent): Promise<void> {
  const queue = deps.usageQueue;
  if (!queue) return writeDirectly(deps.db, [event]);
  let batch = openBatches.get(queue);
  if (!batch) {
    batch = {
      deps: { db: deps.db, usageQueue: queue },
      events: [],
      dueAt: Date.now() + USAGE_BATCH_WAIT_MS,
      sending: undefined,
    };
    openBatches.set(queue, batch);
  }
  batch.events.push(event);
  if (batch.events.length >= USAGE_BATCH_MAX_EVENTS) return send(batch);
  const due = batch;
  return new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, due.dueAt - Date.now()))).then(() => send(due));
}

/** Sends the batch once, whichever of its requests gets here first. */
function send(batch: OpenBatch): Promise<void> {
  if (!batch.sending) {
    const queue = batch.deps.usageQueue;
    if (openBatches.get(queue) === batch) openBatches.delete(queue);
    batch.sending = sendNow(batch.deps, batch.events);
  }
  return batch.sending;
}

async function sendNow(deps: RecordInvocationDeps & { usageQueue: UsageQueue }, events: MetricsEvent[]) {
  const queue = deps.usageQueue;
  try {
    if (queue.sendBatch) await queue.sendBatch(events.map((body) => ({ body })));
    else for (const event of events) await queue.send(event);
  } catch (err) {
    logWarn("usage_enqueue_failed", {
      events: events.length,
      requestId: events[0]?.dedupeKey,
      error: describeError(err),
    });
    await writeDirectly(deps.db, events);
  }
}

async function writeDirectly(db: Db, events: MetricsEvent[]): Promise<void> {
  try {
    await recordEvents(db, events);
  } catch (err) {
    logError("record_invocation_failed", {
      events: events.length,
      requestId: events[0]?.dedupeKey,
      error: describeError(err),
    });
  }
}
