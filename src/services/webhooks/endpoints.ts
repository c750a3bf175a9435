// A user's webhook endpoints: create (the `whsec_…` secret is in that answer only), list, read,
// delete, rotate the secret (the previous one keeps signing for ROTATION_OVERLAP_MS), send a test
// event, and read the deliveries. Every query is scoped by the caller's user id; another user's
// endpoint is "not found". Secrets are sealed (AES-256-GCM, crypto/envelope.ts) before they reach D1.
import { and, desc, eq, lt, sql } from "drizzle-orm";
import { webhookSecretAad } from "../../crypto/aad";
import { encryptSecret } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import { selectRowWhere } from "../../db/insert-select";
import { type WebhookDeliveryRow, type WebhookEndpointRow, webhookDeliveries, webhookEndpoints } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { isIdOf, newId } from "../../lib/ids";
import { recordAudit, userActor } from "../audit/audit";
import type { TenantDeps } from "../tenant";
import { eventPayload, TEST_EVENT_TYPE, type WebhookEventType } from "./events";
import type { WebhookQueue } from "./queue";
import { receiverUrlProblem } from "./receiver-url";
import { generateWebhookSecret } from "./signing";

/** Endpoints a user may hold at once. */
export const MAX_WEBHOOKS_PER_USER = 10;
/** How long the previous secret keeps signing after a rotation. */
export const ROTATION_OVERLAP_MS = 24 * 60 * 60_000;

export type WebhookDeps = TenantDeps & { keyring: Keyring; environment: string };

export function webhookNotFound(id: string): ApiError {
  return new ApiError("not_found", `webhook ${id} not found`);
}

export async function createWebhook(
  deps: WebhookDeps,
  input: { url: string; events: WebhookEventType[] },
  opts: { now?: number } = {},
): Promise<{ row: WebhookEndpointRow; secret: string }> {
  const problem = receiverUrlProblem(input.url, deps.environment);
  if (problem) {
    throw new ApiError("validation_failed", `url ${problem}`, { errors: [{ location: "body.url", message: problem }] });
  }
  const now = opts.now ?? Date.now();
  const { db, userId } = deps;
  const id = newId("webhook", now);
  const secret = generateWebhookSecret();
  const row: WebhookEndpointRow = {
    id,
    userId,
    url: input.url,
    events: [...new Set(input.events)],
    status: "enabled",
    disabledReason: null,
    disabledAt: null,
    secretCiphertext: await encryptSecret(deps.keyring, secret, webhookSecretAad(id)),
    previousSecretCiphertext: null,
    previousSecretExpiresAt: null,
    failingSince: null,
    createdAt: now,
    updatedAt: now,
  };
  // The limit is checked inside the INSERT, so concurrent creates cannot pass it.
  const underLimit = sql`(SELECT count(*) FROM ${webhookEndpoints} WHERE ${webhookEndpoints.userId} = ${userId}) < ${MAX_WEBHOOKS_PER_USER}`;
  const [inserted] = await db.batch([
    db
      .insert(webhookEndpoints)
      .select(selectRowWhere(webhookEndpoints, row, underLimit))
      .returning({ id: webhookEndpoints.id }),
    recordAudit(
      db,
      {
        userId,
        actor: userActor(userId),
        action: "webhook.created",
        targetType: "webhook",
        targetId: id,
        details: { url: row.url, events: row.events.join(" ") },
      },
      { now, onlyIf: sql`EXISTS (SELECT 1 FROM ${webhookEndpoints} WHERE ${webhookEndpoints.id} = ${id})` },
    ),
  ]);
  if (inserted.length === 0) {
    throw new ApiError("too_many_webhooks", `you already have ${MAX_WEBHOOKS_PER_USER} webhooks; delete one first`, {
      extra: { max: MAX_WEBHOOKS_PER_USER },
    });
  }
  return { row, secret };
}

export async function listWebhooks({ db, userId }: TenantDeps): Promise<WebhookEndpointRow[]> {
  return db
    .select()
    .from(webhookEndpoints)
    .where(eq(webhookEndpoints.userId, userId))
    .orderBy(desc(webhookEndpoints.id))
    .limit(MAX_WEBHOOKS_PER_USER);
}

export async function getWebhook({ db, userId }: TenantDeps, id: string): Promise<WebhookEndpointRow> {
  if (!isIdOf("webhook", id)) throw webhookNotFound(id);
  const row = await db
    .select()
    .from(webhookEndpoints)
    .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.userId, userId)))
    .get();
  if (!row) throw webhookNotFound(id);
  return row;
}

/** Deletes the endpoint and its delivery history; deliveries still queued find nothing and stop. */
export async function deleteWebhook({ db, userId }: TenantDeps, id: string, opts: { now?: number } = {}) {
  if (!isIdOf("webhook", id)) throw webhookNotFound(id);
  const now = opts.now ?? Date.now();
  const target = and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.userId, userId));
  const [, deleted] = await db.batch([
    // Before the delete, so the condition can still see the row.
    recordAudit(
      db,
      { userId, actor: userActor(userId), action: "webhook.deleted", targetType: "webhook", targetId: id },
      { now, onlyIf: sql`EXISTS (SELECT 1 FROM ${webhookEndpoints} WHERE ${target})` },
    ),
    db.delete(webhookEndpoints).where(target).returning({ id: webhookEndpoints.id }),
  ]);
  if (deleted.length === 0) throw webhookNotFound(id);
}

/**
 * A new secret: it signs every later attempt, and the one it replaces signs alongside it (a second
 * `v1,` signature) for ROTATION_OVERLAP_MS, so receivers can switch without missing a delivery. A
 * rotation during an overlap drops the oldest secret.
 */
export async function rotateWebhookSecret(
  deps: WebhookDeps,
  id: string,
  opts: { now?: number } = {},
): Promise<{ row: WebhookEndpointRow; secret: string }> {
  const current = await getWebhook(deps, id);
  const now = opts.now ?? Date.now();
  const secret = generateWebhookSecret();
  const sealed = await encryptSecret(deps.keyring, secret, webhookSecretAad(id));
  const { db, userId } = deps;
  const [updated] = await db.batch([
    db
      .update(webhookEndpoints)
      .set({
        secretCiphertext: sealed,
        // Both columns are sealed with the endpoint's additional data, so the envelope moves as is.
        previousSecretCiphertext: current.secretCiphertext,
        previousSecretExpiresAt: now + ROTATION_OVERLAP_MS,
        updatedAt: now,
      })
      // Only over the secret we read: a concurrent rotation wins and this one is refused.
      .where(
        and(
          eq(webhookEndpoints.id, id),
          eq(webhookEndpoints.userId, userId),
          eq(webhookEndpoints.secretCiphertext, current.secretCiphertext),
        ),
      )
      .returning(),
    recordAudit(
      db,
      {
        userId,
        actor: userActor(userId),
        action: "webhook.secret_rotated",
        targetType: "webhook",
        targetId: id,
        details: { previousSecretExpiresAt: now + ROTATION_OVERLAP_MS },
      },
      {
        now,
        onlyIf: sql`EXISTS (SELECT 1 FROM ${webhookEndpoints} WHERE ${webhookEndpoints.id} = ${id} AND ${webhookEndpoints.secretCiphertext} = ${sealed})`,
      },
    ),
  ]);
  const row = updated[0];
  if (!row)
    throw new ApiError("conflict", `webhook ${id} was rotated concurrently; rotate again for a secret you hold`);
  return { row, secret };
}

/** Test events one endpoint may be sent per minute. */
export const TEST_EVENTS_PER_MINUTE = 5;

/** Queues one `webhook.test` delivery to this endpoint (whatever its events), for checking a receiver. */
export async function sendTestEvent(
  deps: TenantDeps & { queue: WebhookQueue },
  id: string,
  opts: { now?: number } = {},
): Promise<WebhookDeliveryRow> {
  const endpoint = await getWebhook(deps, id);
  if (endpoint.status !== "enabled") {
    throw new ApiError(
      "webhook_disabled",
      `webhook ${id} is disabled: ${endpoint.disabledReason ?? "no reason recorded"}`,
    );
  }
  const now = opts.now ?? Date.now();
  // Test events are for checking a receiver, not for making the gateway send traffic somewhere:
  // at most TEST_EVENTS_PER_MINUTE per endpoint (read from its newest deliveries, by its index).
  const newest = await deps.db
    .select({ eventType: webhookDeliveries.eventType, createdAt: webhookDeliveries.createdAt })
    .from(webhookDeliveries)
    .where(eq(webhookDeliveries.endpointId, id))
    .orderBy(desc(webhookDeliveries.id))
    .limit(TEST_EVENTS_PER_MINUTE);
  const recentTests = newest.filter((d) => d.eventType === TEST_EVENT_TYPE && d.createdAt > now - 60_000);
  if (recentTests.length >= TEST_EVENTS_PER_MINUTE) {
    throw new ApiError("rate_limited", `at most ${TEST_EVENTS_PER_MINUTE} test events a minute per webhook`, {
      headers: { "retry-after": "60" },
    });
  }
  const row = newDeliveryRow(
    endpoint,
    TEST_EVENT_TYPE,
    { webhookId: id, message: "a test event from webhost.systems" },
    now,
  );
  await deps.db.insert(webhookDeliveries).values(row);
  await deps.queue.send({ deliveryId: row.id });
  return row;
}

export function newDeliveryRow(
  endpoint: Pick<WebhookEndpointRow, "id" | "userId">,
  type: string,
  data: Record<string, unknown>,
  now: number,
): WebhookDeliveryRow {
  return {
    id: newId("webhookMessage", now),
    userId: endpoint.userId,
    endpointId: endpoint.id,
    eventType: type,
    payload: eventPayload(type, data, now),
    status: "pending",
    attempts: 0,
    lastAttemptAt: null,
    lastResponseStatus: null,
    lastError: null,
    nextAttemptAt: now,
    claimedAt: null,
    createdAt: now,
    updatedAt: now,
  };
}

export const MAX_DELIVERIES_PAGE = 100;

/** An endpoint's deliveries, newest first; `beforeId` continues after a previous page. */
export async function listDeliveries(
  deps: TenantDeps,
  id: string,
  input: { limit: number; beforeId?: string },
): Promise<{ rows: WebhookDeliveryRow[]; hasMore: boolean }> {
  await getWebhook(deps, id);
  const rows = await deps.db
    .select()
    .from(webhookDeliveries)
    .where(
      and(
        eq(webhookDeliveries.endpointId, id),
        eq(webhookDeliveries.userId, deps.userId),
        input.beforeId ? lt(webhookDeliveries.id, input.beforeId) : undefined,
      ),
    )
    .orderBy(desc(webhookDeliveries.id))
    .limit(input.limit + 1);
  return { rows: rows.slice(0, input.limit), hasMore: rows.length > input.limit };
}
