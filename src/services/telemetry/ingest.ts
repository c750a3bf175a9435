// Telemetry ingest: a report that verify-report.ts accepted passes the deployment's rate limit
// (rate-limit.ts) and the user's period quota (event-quota.ts), then is stored, append-only with
// dedupe, through the metering writer. Both doors (the TelemetrySink entrypoint and the HTTP
// route) call ingestTelemetryReport. Only verified reports count against either limit, so nobody
// without the deployment's secret can use up its allowance.
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { newId } from "../../lib/ids";
import { metricsEvent } from "../metering/event";
import { recordEvents } from "../metering/record-events";
import type { TierLimitsByTier } from "../usage/tiers";
import { getUserTier } from "../usage/user-tier";
import { dedupeKeyOf, type TelemetryEvent } from "./event";
import { admitTelemetryEvents } from "./event-quota";
import { takeTelemetryTokens } from "./rate-limit";
import { type TelemetryCaller, type TelemetryReport, telemetryProblem, verifyTelemetryReport } from "./verify-report";

export type TelemetryResult = { accepted: number; duplicates: number };

export type TelemetryIngestDeps = {
  db: Db;
  keyring: Keyring;
  tierLimits: TierLimitsByTier;
  now?: number;
  waitUntil?: (promise: Promise<unknown>) => void;
};

export async function ingestTelemetryReport(
  deps: TelemetryIngestDeps,
  report: TelemetryReport,
  caller?: TelemetryCaller,
): Promise<TelemetryResult> {
  const now = deps.now ?? Date.now();
  const { deployment, events } = await verifyTelemetryReport({ ...deps, now }, report, caller);
  const tier = await getUserTier(deps.db, deployment.userId, { now });
  const limits = deps.tierLimits[tier];

  const rate = takeTelemetryTokens(deployment.deploymentId, {
    cost: events.length,
    perMinute: limits.telemetryEventsPerMinute,
    now,
  });
  if (!rate.allowed) {
    throw telemetryProblem(
      "rate_limited",
      "rate_limit",
      `the ${tier} plan accepts ${rate.perMinute} telemetry events per minute per deployment; retry after ${rate.retryAfterSeconds} s`,
      undefined,
      {
        headers: { "retry-after": String(rate.retryAfterSeconds) },
        extra: {
          limit: "telemetryEventsPerMinute",
          tier,
          max: rate.perMinute,
          retryAfterSeconds: rate.retryAfterSeconds,
        },
      },
    );
  }

  const quota = await admitTelemetryEvents(deps.db, {
    userId: deployment.userId,
    cost: events.length,
    limit: limits.telemetryEventsPerPeriod,
    now,
    waitUntil: deps.waitUntil,
  });
  if (!quota.allowed) {
    throw telemetryProblem(
      "usage_limit_exceeded",
      "event_quota",
      `the ${tier} plan allows ${quota.limit} telemetry events per month; ${quota.periodKey} has ${quota.current} stored and this report holds ${events.length}`,
      undefined,
      {
        headers: { "retry-after": String(quota.resetSeconds) },
        extra: {
          limit: "telemetryEventsPerPeriod",
          tier,
          max: quota.limit,
          current: quota.current,
          periodKey: quota.periodKey,
        },
      },
    );
  }

  let accepted = 0;
  try {
    accepted = await insertEvents(deps.db, deployment, events, now);
  } finally {
    // Duplicates (and events of a failed write) were never stored: they do not count.
    quota.release(events.length - accepted);
  }
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
