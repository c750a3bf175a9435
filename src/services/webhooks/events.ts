// The lifecycle events a webhook endpoint can subscribe to, the envelope every delivery carries
// ({ type, timestamp, data }, Standard Webhooks' recommended payload shape) and the data of each
// event, built from explicit field lists so no secret material (telemetry keys, secret snapshots)
// can ride along.
import type { DeploymentRow } from "../../db/schema";

export const WEBHOOK_EVENT_TYPES = [
  "deployment.active",
  "deployment.failed",
  "deployment.ready",
  "rollout.advanced",
  "rollout.aborted",
  "rollout.completed",
  "usage.threshold",
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** Sent by `POST /v1/webhooks/:id/test` to that endpoint only, whatever it subscribes to. */
export const TEST_EVENT_TYPE = "webhook.test";

/** Largest event body a delivery carries; our own events are far smaller. */
export const MAX_EVENT_PAYLOAD_BYTES = 64 * 1024;
/**
 * Undelivered (`pending`) deliveries one endpoint may hold. A receiver that fails for days would
 * otherwise pile up every event it missed, each retried ~16 times; past this, new events are not
 * queued for it (logged `webhook_backlog_full`) until its backlog drains.
 */
export const MAX_PENDING_DELIVERIES_PER_ENDPOINT = 1000;

export type WebhookEvent = {
  userId: string;
  type: WebhookEventType;
  /** JSON-serialisable; never secret values. */
  data: Record<string, unknown>;
};

/** The exact body of a delivery. */
export function eventPayload(type: string, data: Record<string, unknown>, now: number): string {
  return JSON.stringify({ type, timestamp: new Date(now).toISOString(), data });
}

/** `deployment.*` data: what a receiver needs to act on a deployment, by name. */
export function deploymentEventData(row: DeploymentRow): Record<string, unknown> {
  return {
    deployment: {
      id: row.id,
      agentId: row.agentId,
      status: row.status,
      activation: row.activation,
      moduleSha256: row.moduleSha256,
      errorMessage: row.errorMessage,
      createdAt: row.createdAt,
      activatedAt: row.activatedAt,
    },
  };
}

/** The `deployment.*` event a deployment's status announces, if any. */
export function deploymentEventType(status: DeploymentRow["status"]): WebhookEventType | undefined {
  if (status === "active") return "deployment.active";
  if (status === "ready") return "deployment.ready";
  if (status === "failed") return "deployment.failed";
  return undefined;
}
