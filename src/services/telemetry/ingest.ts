// Telemetry ingest: a report that verify-report.ts accepted passes the deployment's rate limit
// (rate-limit.ts) and the user's period quota (event-quota.ts), then it is handed to the usage
// queue as one message (enqueue.ts) and the caller is answered; the queue's consumer stores them with
// dedupe and meters them (services/metering/usage-queue.ts). Nothing is written to D1 on the
// response path, so a report costs the caller a signature check and a queue send. Both doors
// (the TelemetrySink entrypoint and the HTTP route) call ingestTelemetryReport. Only verified
// reports count against either limit, so nobody without the deployment's secret can use up its
// allowance.
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { describeError, logWarn } from "../../lib/logger";
import type { TierLimitsByTier } from "../usage/tiers";
import { getUserTier } from "../usage/user-tier";
import { enqueueTelemetryReport, type TelemetryQueue } from "./enqueue";
import { admitTelemetryEvents } from "./event-quota";
import { returnTelemetryTokens, takeTelemetryTokens } from "./rate-limit";
import { type TelemetryCaller, type TelemetryReport, telemetryProblem, verifyTelemetryReport } from "./verify-report";

/**
 * What a report's answer promises: its `accepted` events were verified and are durably queued;
 * they are stored within seconds, where an event already stored (same eventId, else traceId) is
 * dropped as a duplicate. Whether an event was a duplicate is not known when the answer is given.
 */
export type TelemetryResult = { accepted: number; queued: true };

/** Seconds a caller is told to wait after the queue refused a report. */
export const TELEMETRY_ENQUEUE_RETRY_SECONDS = 5;

export type TelemetryIngestDeps = {
  db: Db;
  keyring: Keyring;
  tierLimits: TierLimitsByTier;
  /** The usage queue (USAGE_QUEUE): where verified events go to be stored. */
  usageQueue: TelemetryQueue;
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

  try {
    await enqueueTelemetryReport(deps.usageQueue, deployment, events, now);
  } catch (err) {
    // Not queued, so not admitted: the caller retries the whole report.
    quota.release(events.length);
    returnTelemetryTokens(deployment.deploymentId, events.length);
    logWarn("telemetry_enqueue_failed", {
      deploymentId: deployment.deploymentId,
      events: events.length,
      error: describeError(err),
    });
    throw telemetryProblem(
      "service_unavailable",
      "enqueue",
      `the telemetry queue is unavailable; the report was not accepted, retry after ${TELEMETRY_ENQUEUE_RETRY_SECONDS} s`,
      undefined,
      { headers: { "retry-after": String(TELEMETRY_ENQUEUE_RETRY_SECONDS) } },
    );
  }
  return { accepted: events.length, queued: true };
}
