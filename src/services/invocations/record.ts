// The gateway's own measurement of each invocation (source 'gateway', deduped by request id).
// Called off the response path (ctx.waitUntil); it never throws. It goes to the usage queue,
// whose consumer meters whole batches into metrics_events + billing_usage with two D1 statements
// (services/usage/record-events.ts); only if the queue refuses it is it written directly.
import type { Db } from "../../db/client";
import { newId } from "../../lib/ids";
import { describeError, logError, logWarn } from "../../lib/logger";
import { type MetricsEventInput, recordEvents } from "../usage/record-events";

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
};

export type RecordInvocationCtx = {
  db: Db;
  usageQueue?: { send(event: MetricsEventInput): Promise<unknown> };
};

export function measurementEvent(m: InvocationMeasurement): MetricsEventInput {
  return {
    id: newId("event", m.startedAt),
    userId: m.userId,
    agentId: m.agentId,
    deploymentId: m.deploymentId,
    source: "gateway",
    dedupeKey: m.requestId,
    eventId: null,
    traceId: m.requestId,
    runtimeProvider: m.runtimeProvider,
    kind: "invoke",
    ts: m.startedAt,
    durationMs: m.durationMs,
    status: m.ok ? "ok" : "error",
    errorCode: m.errorCode ?? null,
    inputTokens: null,
    outputTokens: null,
    bytesIn: m.bytesIn,
    bytesOut: m.bytesOut,
    streaming: m.streaming,
    receivedAt: Date.now(),
  };
}

export async function recordInvocation(ctx: RecordInvocationCtx, m: InvocationMeasurement): Promise<void> {
  const event = measurementEvent(m);
  if (ctx.usageQueue) {
    try {
      await ctx.usageQueue.send(event);
      return;
    } catch (err) {
      logWarn("usage_enqueue_failed", { requestId: m.requestId, error: describeError(err) });
    }
  }
  try {
    await recordEvents(ctx.db, [event]);
  } catch (err) {
    logError("record_invocation_failed", { requestId: m.requestId, error: describeError(err) });
  }
}
