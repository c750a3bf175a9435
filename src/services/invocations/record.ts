// The gateway's own measurement of each invocation, stored as a metrics_events row (source
// 'gateway', deduped by request id). Called off the response path (ctx.waitUntil); it never
// throws. One function so that batched metering (issue 5) can replace it.
import type { Db } from "../../db/client";
import { metricsEvents } from "../../db/schema";
import { newId } from "../../lib/ids";
import { describeError, logError } from "../../lib/logger";

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

export async function recordInvocation(ctx: { db: Db }, m: InvocationMeasurement): Promise<void> {
  try {
    await ctx.db
      .insert(metricsEvents)
      .values({
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
        bytesIn: m.bytesIn,
        bytesOut: m.bytesOut,
        streaming: m.streaming,
        receivedAt: Date.now(),
      })
      .onConflictDoNothing();
  } catch (err) {
    logError("record_invocation_failed", { requestId: m.requestId, error: describeError(err) });
  }
}
