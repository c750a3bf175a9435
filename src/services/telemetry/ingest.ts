// Telemetry ingest: a report that verify-report.ts accepted is stored, append-only with dedupe,
// through the metering writer. Both doors (the TelemetrySink entrypoint and the HTTP route) call
// ingestTelemetryReport.
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { newId } from "../../lib/ids";
import { metricsEvent } from "../metering/event";
import { recordEvents } from "../metering/record-events";
import { dedupeKeyOf, type TelemetryEvent } from "./event";
import { type TelemetryCaller, type TelemetryReport, verifyTelemetryReport } from "./verify-report";

export type TelemetryResult = { accepted: number; duplicates: number };

export async function ingestTelemetryReport(
  deps: { db: Db; keyring: Keyring; now?: number },
  report: TelemetryReport,
  caller?: TelemetryCaller,
): Promise<TelemetryResult> {
  const now = deps.now ?? Date.now();
  const { deployment, events } = await verifyTelemetryReport({ ...deps, now }, report, caller);
  const accepted = await insertEvents(deps.db, deployment, events, now);
  return { accepted, duplicates: events.length - accepted };
}

/**
 * Stored through the metering writer shared with the gateway's own measurements: one D1 batch
 * for any number of events, ON CONFLICT on the dedupe index drops replays (also duplicates inside
 * the same report), and billing_usage is incremented from exactly the rows inserted. The insert's
 * changed-row count is what was really new.
 */
async function insertEvents(
  db: Db,
  deployment: { deploymentId: string; userId: string; agentId: string },
  events: TelemetryEvent[],
  now: number,
): Promise<number> {
  const { inserted } = await recordEvents(
    db,
    events.map((e) =>
      metricsEvent({
        id: newId("event", now),
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
        receivedAt: now,
      }),
    ),
  );
  return inserted;
}
