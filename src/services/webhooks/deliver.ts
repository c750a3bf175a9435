// Sending one delivery, as the webhook-deliveries queue's consumer runs it. The delivery row is
// claimed (claimed_at, a conditional UPDATE) so a duplicate queue message cannot send it twice at
// once; the endpoint's URL is checked again (receiver-url.ts); the body is signed per Standard
// Webhooks with the endpoint's secret (and, during a rotation, the previous one) and POSTed with a
// short timeout, redirects not followed. Then:
//   2xx                 the delivery succeeded; the endpoint is no longer failing.
//   410 Gone            the delivery failed and the endpoint is disabled (the receiver asked us to stop).
//   anything else       retried with exponential backoff (retryBaseSeconds × 2^(n−1), at most the
//                       queue's 12 h) while the next attempt falls within RETRY_WINDOW_MS of the
//                       event; an endpoint with no success for DISABLE_AFTER_FAILING_MS is disabled.
// Every state the user can see (attempts, last status, last error, why an endpoint was disabled)
// is written to D1; the receiver's answer body is never stored.
import { and, eq, isNull, lte, or, sql } from "drizzle-orm";
import { webhookSecretAad } from "../../crypto/aad";
import { decryptSecretText } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { type WebhookDeliveryRow, type WebhookEndpointRow, webhookDeliveries, webhookEndpoints } from "../../db/schema";
import { backoffSeconds } from "../../lib/backoff";
import { describeError } from "../../lib/logger";
import type { QueueOutcome } from "../../lib/queue-outcome";
import type { WebhookDeliveryJob, WebhookQueue } from "./queue";
import { receiverUrlProblem } from "./receiver-url";
import { webhookSignature } from "./signing";

const HOUR_MS = 60 * 60_000;
const DAY_MS = 24 * HOUR_MS;
/** Retries stop once the next attempt would come later than this after the event. */
export const RETRY_WINDOW_MS = 3 * DAY_MS;
/** An endpoint none of whose attempts succeeded for this long is disabled. */
export const DISABLE_AFTER_FAILING_MS = 5 * DAY_MS;
/** The longest delay a Cloudflare Queue accepts for a retry (12 hours). */
export const MAX_RETRY_DELAY_SECONDS = 12 * 60 * 60;

export type DeliveryPolicy = {
  /** The first retry's delay; each later one doubles (WEBHOOK_RETRY_BASE_SECONDS). */
  retryBaseSeconds: number;
  /** How long one attempt may take, answer included (WEBHOOK_TIMEOUT_MS). */
  timeoutMs: number;
};

export type DeliveryDeps = {
  db: Db;
  keyring: Keyring;
  environment: string;
  policy: DeliveryPolicy;
  /** The network; tests hand in a receiver of their own. */
  fetch?: typeof fetch;
};

export type DeliveryOutcome = QueueOutcome<
  "succeeded" | "retrying" | "failed" | "endpoint_disabled" | "not_found" | "already_finished" | "claimed_elsewhere"
>;

/** The delay before attempt n + 1, after n failed attempts. */
export function deliveryRetryDelaySeconds(failedAttempts: number, policy: DeliveryPolicy): number {
  return backoffSeconds(failedAttempts, { baseSeconds: policy.retryBaseSeconds, maxSeconds: MAX_RETRY_DELAY_SECONDS });
}

export async function processDelivery(
  deps: DeliveryDeps,
  job: WebhookDeliveryJob,
  opts: { now?: number } = {},
): Promise<DeliveryOutcome> {
  const { db } = deps;
  const now = opts.now ?? Date.now();
  const leaseMs = deps.policy.timeoutMs + 30_000;
  const [row] = await db
    .update(webhookDeliveries)
    .set({ claimedAt: now, updatedAt: now })
    .where(
      and(
        eq(webhookDeliveries.id, job.deliveryId),
        eq(webhookDeliveries.status, "pending"),
        or(isNull(webhookDeliveries.claimedAt), lte(webhookDeliveries.claimedAt, now - leaseMs)),
      ),
    )
    .returning();
  if (!row) {
    const current = await db
      .select({ status: webhookDeliveries.status, claimedAt: webhookDeliveries.claimedAt })
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.id, job.deliveryId))
      .get();
    if (!current) return { action: "ack", result: "not_found" };
    if (current.status !== "pending") return { action: "ack", result: "already_finished" };
    const left = (current.claimedAt ?? now) + leaseMs - now;
    return { action: "retry", result: "claimed_elsewhere", delaySeconds: Math.max(1, Math.ceil(left / 1000)) };
  }
  const claim = now;
  const endpoint = await db
    .select()
    .from(webhookEndpoints)
    .where(and(eq(webhookEndpoints.id, row.endpointId), eq(webhookEndpoints.userId, row.userId)))
    .get();
  if (!endpoint) return finish(db, row, claim, now, { status: "failed", lastError: "the webhook was deleted" });
  if (endpoint.status !== "enabled") {
    return finish(db, row, claim, now, {
      status: "failed",
      lastError: `the webhook is disabled: ${endpoint.disabledReason ?? "no reason recorded"}`,
    });
  }
  const refused = receiverUrlProblem(endpoint.url, deps.environment);
  if (refused) {
    return finish(db, row, claim, now, { status: "failed", lastError: `not sent: the URL ${refused}` });
  }

  const secrets = await endpointSecrets(deps.keyring, endpoint, now);
  const attempt = await send(deps, endpoint.url, row, secrets, now);
  const attempts = row.attempts + 1;
  const seen = {
    attempts,
    lastAttemptAt: now,
    lastResponseStatus: attempt.status ?? null,
    lastError: attempt.error ?? null,
  };

  if (attempt.status !== undefined && attempt.status >= 200 && attempt.status < 300) {
    await db
      .update(webhookEndpoints)
      .set({ failingSince: null, updatedAt: now })
      .where(and(eq(webhookEndpoints.id, endpoint.id), sql`${webhookEndpoints.failingSince} IS NOT NULL`));
    return finish(db, row, claim, now, { ...seen, status: "succeeded", lastError: null }, "succeeded");
  }
  if (attempt.status === 410) {
    await disableEndpoint(db, endpoint.id, now, `the receiver answered 410 Gone on ${new Date(now).toISOString()}`);
    return finish(db, row, claim, now, { ...seen, status: "failed" }, "endpoint_disabled");
  }
  // A failure: the endpoint is failing from its first failure since its last success.
  const [marked] = await db
    .update(webhookEndpoints)
    .set({ failingSince: sql`COALESCE(${webhookEndpoints.failingSince}, ${now})`, updatedAt: now })
    .where(eq(webhookEndpoints.id, endpoint.id))
    .returning({ failingSince: webhookEndpoints.failingSince });
  const failingSince = marked?.failingSince ?? now;
  if (now - failingSince >= DISABLE_AFTER_FAILING_MS) {
    await disableEndpoint(
      db,
      endpoint.id,
      now,
      `no delivery succeeded for ${DISABLE_AFTER_FAILING_MS / DAY_MS} days (failing since ${new Date(failingSince).toISOString()}); last attempt: ${seen.lastError}`,
    );
    return finish(db, row, claim, now, { ...seen, status: "failed" }, "endpoint_disabled");
  }
  const delaySeconds = deliveryRetryDelaySeconds(attempts, deps.policy);
  const nextAttemptAt = now + delaySeconds * 1000;
  if (nextAttemptAt > row.createdAt + RETRY_WINDOW_MS) {
    return finish(db, row, claim, now, {
      ...seen,
      status: "failed",
      lastError: `gave up after ${attempts} attempts: ${seen.lastError}`,
    });
  }
  await finish(db, row, claim, now, { ...seen, status: "pending", nextAttemptAt });
  return { action: "retry", result: "retrying", delaySeconds, error: seen.lastError ?? undefined };
}

/** The secrets that sign now: the current one, and the previous one until its overlap ends. */
async function endpointSecrets(keyring: Keyring, endpoint: WebhookEndpointRow, now: number): Promise<string[]> {
  const aad = webhookSecretAad(endpoint.id);
  const secrets = [await decryptSecretText(keyring, endpoint.secretCiphertext, aad)];
  if (
    endpoint.previousSecretCiphertext !== null &&
    endpoint.previousSecretExpiresAt !== null &&
    endpoint.previousSecretExpiresAt > now
  ) {
    secrets.push(await decryptSecretText(keyring, endpoint.previousSecretCiphertext, aad));
  }
  return secrets;
}

type Attempt = { status?: number; error?: string };

async function send(
  deps: DeliveryDeps,
  url: string,
  row: WebhookDeliveryRow,
  secrets: string[],
  now: number,
): Promise<Attempt> {
  const timestamp = Math.floor(now / 1000);
  const headers = {
    "content-type": "application/json",
    "user-agent": "webhost-webhooks/1",
    "webhook-id": row.id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": await webhookSignature(secrets, row.id, timestamp, row.payload),
  };
  const doFetch = deps.fetch ?? fetch;
  const signal = AbortSignal.timeout(deps.policy.timeoutMs);
  try {
    // Not followed: a redirect could lead anywhere, including an address the URL check refuses.
    const res = await doFetch(url, { method: "POST", headers, body: row.payload, redirect: "manual", signal });
    // Only the status matters; the receiver's body is neither read nor stored.
    await res.body?.cancel().catch(() => undefined);
    if (res.status >= 200 && res.status < 300) return { status: res.status };
    if (res.status >= 300 && res.status < 400)
      return { status: res.status, error: `answered ${res.status} (redirects are not followed)` };
    return { status: res.status, error: `answered ${res.status}` };
  } catch (err) {
    if (signal.aborted) return { error: `no answer within ${deps.policy.timeoutMs} ms` };
    return { error: `could not connect: ${describeError(err).slice(0, 200)}` };
  }
}

async function disableEndpoint(db: Db, endpointId: string, now: number, reason: string): Promise<void> {
  await db
    .update(webhookEndpoints)
    .set({ status: "disabled", disabledReason: reason, disabledAt: now, updatedAt: now })
    .where(and(eq(webhookEndpoints.id, endpointId), eq(webhookEndpoints.status, "enabled")));
}

type Finish = Partial<
  Pick<WebhookDeliveryRow, "attempts" | "lastAttemptAt" | "lastResponseStatus" | "lastError" | "nextAttemptAt">
> & { status: WebhookDeliveryRow["status"] };

/** Records the attempt's result and releases the claim (only while this attempt still holds it). */
async function finish(
  db: Db,
  row: WebhookDeliveryRow,
  claim: number,
  now: number,
  change: Finish,
  result: DeliveryOutcome["result"] = "failed",
): Promise<DeliveryOutcome> {
  await db
    .update(webhookDeliveries)
    .set({ ...change, nextAttemptAt: change.nextAttemptAt ?? null, claimedAt: null, updatedAt: now })
    .where(and(eq(webhookDeliveries.id, row.id), eq(webhookDeliveries.claimedAt, claim)));
  return { action: "ack", result, error: change.status === "failed" ? (change.lastError ?? undefined) : undefined };
}

/** Pending deliveries whose queue message is overdue by this much are sent again by the cron. */
export const STALLED_DELIVERY_MS = 15 * 60_000;
const REQUEUE_BATCH = 100;

/**
 * The safety net for lost queue messages (a failed send after the rows were written, a message
 * dropped by the queue): pending deliveries overdue by STALLED_DELIVERY_MS and not being sent are
 * queued again. A receiver may then see a delivery twice; `webhook-id` is the same, so it can
 * ignore the repeat.
 */
export async function requeueStalledDeliveries(
  deps: { db: Db; webhookQueue: WebhookQueue },
  opts: { now?: number; leaseMs?: number } = {},
): Promise<{ requeued: number }> {
  const now = opts.now ?? Date.now();
  const leaseMs = opts.leaseMs ?? 60_000;
  const rows = await deps.db
    .update(webhookDeliveries)
    .set({ nextAttemptAt: now, updatedAt: now })
    .where(
      sql`${webhookDeliveries.id} IN (SELECT ${webhookDeliveries.id} FROM ${webhookDeliveries}
        WHERE ${webhookDeliveries.status} = 'pending' AND ${webhookDeliveries.nextAttemptAt} < ${now - STALLED_DELIVERY_MS}
          AND (${webhookDeliveries.claimedAt} IS NULL OR ${webhookDeliveries.claimedAt} < ${now - leaseMs})
        LIMIT ${REQUEUE_BATCH})`,
    )
    .returning({ id: webhookDeliveries.id });
  if (rows.length > 0) await deps.webhookQueue.sendBatch(rows.map((r) => ({ body: { deliveryId: r.id } })));
  return { requeued: rows.length };
}

/** How long delivery history is kept. */
export const DELIVERY_RETENTION_MS = 30 * DAY_MS;

/** Deletes deliveries older than DELIVERY_RETENTION_MS, in bounded batches (the rest on the next run). */
export async function purgeOldDeliveries(
  db: Db,
  opts: { now?: number; batchSize?: number; maxBatches?: number } = {},
): Promise<{ deleted: number; complete: boolean }> {
  const cutoff = (opts.now ?? Date.now()) - DELIVERY_RETENTION_MS;
  const batchSize = opts.batchSize ?? 500;
  let deleted = 0;
  for (let i = 0; i < (opts.maxBatches ?? 10); i++) {
    const rows = await db
      .delete(webhookDeliveries)
      .where(
        sql`${webhookDeliveries.id} IN (SELECT ${webhookDeliveries.id} FROM ${webhookDeliveries}
          WHERE ${webhookDeliveries.createdAt} < ${cutoff} LIMIT ${batchSize})`,
      )
      .returning({ id: webhookDeliveries.id });
    deleted += rows.length;
    if (rows.length < batchSize) return { deleted, complete: true };
  }
  return { deleted, complete: false };
}
