// Lifecycle webhooks inside the Workers runtime: the endpoints API (secret shown once and sealed,
// limits, bad input, private addresses refused outside development), delivery as Standard Webhooks
// (signature checked here with an independent implementation), retries with backoff, 410 and
// five days of failures disabling the endpoint, rotation's two signatures, and which lifecycle
// changes publish which events. Deliveries are driven by calling the consumer's processDelivery
// with a recording receiver; the e2e suite (tests/e2e/webhooks.e2e.test.ts) does it over HTTP.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { envelopeKeyId } from "../src/crypto/envelope";
import { parseKeyring } from "../src/crypto/keys";
import { webhookDeliveries, webhookEndpoints } from "../src/db/schema";
import { getConfig } from "../src/env";
import { handleQueue } from "../src/queues";
import { reencryptStaleSecrets } from "../src/services/secrets/reencrypt";
import { DEFAULT_TIER_LIMITS } from "../src/services/usage/tiers";
import {
  DELIVERY_RETENTION_MS,
  type DeliveryDeps,
  DISABLE_AFTER_FAILING_MS,
  processDelivery,
  purgeOldDeliveries,
  RETRY_WINDOW_MS,
  requeueStalledDeliveries,
  STALLED_DELIVERY_MS,
} from "../src/services/webhooks/deliver";
import {
  createWebhook as createWebhookDirect,
  MAX_WEBHOOKS_PER_USER,
  newDeliveryRow,
  ROTATION_OVERLAP_MS,
  rotateWebhookSecret,
  TEST_EVENTS_PER_MINUTE,
} from "../src/services/webhooks/endpoints";
import { MAX_PENDING_DELIVERIES_PER_ENDPOINT } from "../src/services/webhooks/events";
import { publishEvent } from "../src/services/webhooks/publish";
import { announceUsageThresholds } from "../src/services/webhooks/usage-thresholds";
import * as modules from "./fixtures/modules";
import { callWithEnv, recordingQueue } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deploy, deployAndActivate, waitUntilSettled } from "./helpers/deploy-flow";
import { envWith, randomKey } from "./helpers/env-override";
import { db, userIdOf } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";
import { gatewayEvent } from "./helpers/metrics-events";

type User = Awaited<ReturnType<typeof newUser>>;
const RECEIVER = "http://127.0.0.1:9/hooks";
const DAY_MS = 24 * 60 * 60_000;

async function createWebhook(user: User, body: Record<string, unknown> = {}) {
  const res = await call("POST", "/v1/webhooks", {
    headers: user.headers,
    body: { url: RECEIVER, events: ["deployment.active"], ...body },
  });
  if (res.status !== 201) throw new Error(`create answered ${res.status}: ${await res.text()}`);
  return (await json(res)) as { webhook: { id: string; [k: string]: unknown }; secret: string };
}

/** Standard Webhooks verification, written from the specification (not from src/). */
async function signaturesMatching(secret: string, headers: Headers, body: string): Promise<number> {
  const key = await crypto.subtle.importKey(
    "raw",
    Uint8Array.from(atob(secret.replace(/^whsec_/, "")), (c) => c.charCodeAt(0)),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const signed = `${headers.get("webhook-id")}.${headers.get("webhook-timestamp")}.${body}`;
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(signed)));
  const expected = `v1,${btoa(String.fromCharCode(...mac))}`;
  return (headers.get("webhook-signature") ?? "").split(" ").filter((s) => s === expected).length;
}

type Received = { url: string; headers: Headers; body: string };

/** A receiver that answers the given statuses in turn (the last one repeats) and records each request. */
function receiver(...statuses: number[]): { fetch: typeof fetch; received: Received[] } {
  const received: Received[] = [];
  const fake = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    received.push({ url: request.url, headers: request.headers, body: await request.text() });
    const status = statuses[Math.min(received.length - 1, statuses.length - 1)] ?? 200;
    return new Response(status === 204 ? null : "receiver says hi", { status });
  }) as typeof fetch;
  return { fetch: fake, received };
}

async function deliveryDeps(fetcher: typeof fetch, environment = "development"): Promise<DeliveryDeps> {
  const { keyring } = await getConfig(env);
  return { db, keyring, environment, policy: { retryBaseSeconds: 30, timeoutMs: 2000 }, fetch: fetcher };
}

/** One event published for `userId` with a queue nobody consumes (the test drives the delivery). */
async function publishOne(userId: string, now = Date.now()) {
  const queue = recordingQueue();
  const { queued } = await publishEvent(
    { db, webhookQueue: queue },
    { userId, type: "deployment.active", data: { deployment: { id: "dep_test" } } },
    { now },
  );
  return { queued, ids: (queue.sent as Array<{ deliveryId: string }>).map((m) => m.deliveryId) };
}

const deliveryRow = (id: string) => db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id)).get();
const endpointRow = (id: string) => db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)).get();

describe("webhook endpoints API", () => {
  it("creates an endpoint whose whsec_ secret is in the create answer only and stored sealed; lists, reads and deletes it", async () => {
    const user = await newUser();
    const created = await createWebhook(user, {
      events: ["deployment.active", "usage.threshold", "deployment.active"],
    });
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created.webhook).toMatchObject({
      id: expect.stringMatching(/^whe_/),
      url: RECEIVER,
      events: ["deployment.active", "usage.threshold"],
      status: "enabled",
      disabledReason: null,
    });
    const row = await endpointRow(created.webhook.id);
    expect(row?.secretCiphertext).toMatch(/^v1\./);
    const secretBody = created.secret.slice("whsec_".length);
    expect(JSON.stringify(row)).not.toContain(secretBody);

    for (const path of ["/v1/webhooks", `/v1/webhooks/${created.webhook.id}`]) {
      const res = await call("GET", path, { headers: user.headers });
      const text = await res.text();
      expect(res.status).toBe(200);
      expect(text).toContain(created.webhook.id);
      expect(text).not.toContain(secretBody);
      expect(text).not.toContain(String(row?.secretCiphertext));
    }
    const audit = await json(await call("GET", "/v1/audit", { headers: user.headers }));
    expect(audit.entries.map((e: { action: string }) => e.action)).toContain("webhook.created");

    expect((await call("DELETE", `/v1/webhooks/${created.webhook.id}`, { headers: user.headers })).status).toBe(204);
    await expectProblem(
      await call("GET", `/v1/webhooks/${created.webhook.id}`, { headers: user.headers }),
      404,
      "not_found",
    );
    await expectProblem(
      await call("DELETE", `/v1/webhooks/${created.webhook.id}`, { headers: user.headers }),
      404,
      "not_found",
    );
  });

  it("answers bad input with 400 naming the field, and stores nothing", async () => {
    const user = await newUser();
    const bad: Array<[unknown, string]> = [
      [{ url: RECEIVER }, "body.events"],
      [{ url: RECEIVER, events: [] }, "body.events"],
      [{ url: RECEIVER, events: ["deployment.exploded"] }, "body.events.0"],
      [{ url: RECEIVER, events: "deployment.active" }, "body.events"],
      [{ events: ["deployment.active"] }, "body.url"],
      [{ url: "not a url", events: ["deployment.active"] }, "body.url"],
      [{ url: "ftp://example.com/x", events: ["deployment.active"] }, "body.url"],
      [{ url: "https://user:pw@example.com/x", events: ["deployment.active"] }, "body.url"],
      [{ url: `https://example.com/${"a".repeat(2100)}`, events: ["deployment.active"] }, "body.url"],
      [{ url: RECEIVER, events: ["deployment.active"], secret: "whsec_mine" }, "body.secret"],
    ];
    for (const [body, location] of bad) {
      const problem = await expectProblem(
        await call("POST", "/v1/webhooks", { headers: user.headers, body }),
        400,
        "validation_failed",
      );
      expect(
        problem.errors.map((e: { location: string }) => e.location),
        JSON.stringify(body),
      ).toContain(location);
    }
    expect((await json(await call("GET", "/v1/webhooks", { headers: user.headers }))).webhooks).toEqual([]);
  });

  it("refuses http and private, loopback and link-local receivers outside development; allows them in development", async () => {
    const user = await newUser();
    const outside = { ENVIRONMENT: "staging" };
    for (const url of [
      "http://example.com/hook",
      "https://127.0.0.1/hook",
      "https://localhost:8443/hook",
      "https://10.1.2.3/hook",
      "https://192.168.0.10/hook",
      "https://169.254.169.254/latest",
      "https://[::1]/hook",
      "https://[fe80::1]/hook",
      "https://metadata.internal/hook",
    ]) {
      const res = await callWithEnv(outside, "POST", "/v1/webhooks", {
        headers: user.headers,
        body: { url, events: ["deployment.active"] },
      });
      const problem = await expectProblem(res, 400, "validation_failed");
      expect(problem.errors[0].location, url).toBe("body.url");
    }
    const ok = await callWithEnv(outside, "POST", "/v1/webhooks", {
      headers: user.headers,
      body: { url: "https://hooks.example.com/webhost", events: ["deployment.active"] },
    });
    expect(ok.status).toBe(201);
    // In development (wrangler.toml) a local receiver is fine.
    await createWebhook(user, { url: "http://127.0.0.1:9/local" });
  });

  it("holds a user to MAX_WEBHOOKS_PER_USER endpoints (409), counting only their own", async () => {
    const user = await newUser();
    for (let i = 0; i < MAX_WEBHOOKS_PER_USER; i++) await createWebhook(user);
    await expectProblem(
      await call("POST", "/v1/webhooks", {
        headers: user.headers,
        body: { url: RECEIVER, events: ["deployment.active"] },
      }),
      409,
      "too_many_webhooks",
    );
    await createWebhook(await newUser());
  });

  it("sends at most TEST_EVENTS_PER_MINUTE test events a minute to one endpoint (429 rate_limited)", async () => {
    const user = await newUser();
    const { webhook } = await createWebhook(user);
    for (let i = 0; i < TEST_EVENTS_PER_MINUTE; i++) {
      expect((await call("POST", `/v1/webhooks/${webhook.id}/test`, { headers: user.headers })).status).toBe(202);
    }
    const refused = await call("POST", `/v1/webhooks/${webhook.id}/test`, { headers: user.headers });
    await expectProblem(refused, 429, "rate_limited");
    expect(refused.headers.get("retry-after")).toBe("60");
    // Another endpoint of the same user is not held back.
    const { webhook: other } = await createWebhook(user);
    expect((await call("POST", `/v1/webhooks/${other.id}/test`, { headers: user.headers })).status).toBe(202);
  });

  it("refuses API keys: webhooks are managed with the user's own token", async () => {
    const user = await newUser();
    const key = await json(
      await call("POST", "/v1/api-keys", {
        headers: user.headers,
        body: { name: "ci", scopes: ["agents:read", "deploy"] },
      }),
    );
    await expectProblem(
      await call("POST", "/v1/webhooks", {
        headers: { authorization: `Bearer ${key.key}` },
        body: { url: RECEIVER, events: ["deployment.active"] },
      }),
      403,
      "user_token_required",
    );
  });
});

describe("webhook delivery", () => {
  it("sends a Standard Webhooks request whose signature verifies with the secret, and records the success", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook, secret } = await createWebhook(user);
    const now = Date.now();
    const { ids } = await publishOne(userId, now);
    expect(ids).toHaveLength(1);
    const r = receiver(204);
    expect(await processDelivery(await deliveryDeps(r.fetch), { deliveryId: ids[0]! }, { now })).toEqual({
      action: "ack",
      result: "succeeded",
    });
    expect(r.received).toHaveLength(1);
    const [got] = r.received;
    expect(got!.url).toBe(RECEIVER);
    expect(got!.headers.get("content-type")).toBe("application/json");
    expect(got!.headers.get("webhook-id")).toBe(ids[0]);
    expect(got!.headers.get("webhook-timestamp")).toBe(String(Math.floor(now / 1000)));
    expect(await signaturesMatching(secret, got!.headers, got!.body)).toBe(1);
    // A changed body byte or another secret does not verify.
    expect(await signaturesMatching(secret, got!.headers, got!.body.replace("dep_test", "dep_tesT"))).toBe(0);
    const other = await createWebhook(user);
    expect(await signaturesMatching(other.secret, got!.headers, got!.body)).toBe(0);
    expect(JSON.parse(got!.body)).toEqual({
      type: "deployment.active",
      timestamp: new Date(now).toISOString(),
      data: { deployment: { id: "dep_test" } },
    });

    const list = await json(await call("GET", `/v1/webhooks/${webhook.id}/deliveries`, { headers: user.headers }));
    expect(list.deliveries).toEqual([
      expect.objectContaining({
        id: ids[0],
        webhookId: webhook.id,
        eventType: "deployment.active",
        status: "succeeded",
        attempts: 1,
        lastResponseStatus: 204,
        lastError: null,
        nextAttemptAt: null,
      }),
    ]);
    // Delivered once: a duplicate queue message sends nothing.
    expect(await processDelivery(await deliveryDeps(r.fetch), { deliveryId: ids[0]! })).toEqual({
      action: "ack",
      result: "already_finished",
    });
    expect(r.received).toHaveLength(1);
  });

  it("retries a failing receiver with exponential backoff within about 3 days, then gives up", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook } = await createWebhook(user);
    const t0 = Date.now();
    const { ids } = await publishOne(userId, t0);
    const id = ids[0]!;
    const r = receiver(500);
    const deps = await deliveryDeps(r.fetch);
    let now = t0;
    const delays: number[] = [];
    for (;;) {
      const outcome = await processDelivery(deps, { deliveryId: id }, { now });
      if (outcome.action === "ack") {
        expect(outcome.result).toBe("failed");
        break;
      }
      expect(outcome.result).toBe("retrying");
      delays.push(outcome.delaySeconds);
      const row = await deliveryRow(id);
      expect(row).toMatchObject({ status: "pending", attempts: delays.length, lastResponseStatus: 500 });
      expect(row?.nextAttemptAt).toBe(now + outcome.delaySeconds * 1000);
      now += outcome.delaySeconds * 1000;
    }
    expect(delays.slice(0, 5)).toEqual([30, 60, 120, 240, 480]);
    expect(Math.max(...delays)).toBe(12 * 60 * 60);
    // The last attempt came a little under 3 days after the event; no further one would fit.
    expect(now - t0).toBeLessThanOrEqual(RETRY_WINDOW_MS);
    expect(now - t0).toBeGreaterThan(2 * DAY_MS);
    const row = await deliveryRow(id);
    expect(row).toMatchObject({ status: "failed", attempts: delays.length + 1, lastResponseStatus: 500 });
    expect(row?.lastError).toMatch(/^gave up after \d+ attempts: answered 500/);
    expect(r.received).toHaveLength(delays.length + 1);
    // Every attempt carries the same webhook-id (the receiver can deduplicate on it).
    expect(new Set(r.received.map((x) => x.headers.get("webhook-id")))).toEqual(new Set([id]));
    // Three days of failures are not yet five: the endpoint stays enabled, marked failing.
    const endpoint = await endpointRow(webhook.id);
    expect(endpoint).toMatchObject({ status: "enabled", failingSince: t0 });
  });

  it("disables the endpoint when the receiver answers 410 Gone; later events are not queued for it", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook } = await createWebhook(user);
    const { ids } = await publishOne(userId);
    const r = receiver(410);
    expect(await processDelivery(await deliveryDeps(r.fetch), { deliveryId: ids[0]! })).toMatchObject({
      action: "ack",
      result: "endpoint_disabled",
    });
    const got = await json(await call("GET", `/v1/webhooks/${webhook.id}`, { headers: user.headers }));
    expect(got.webhook.status).toBe("disabled");
    expect(got.webhook.disabledReason).toMatch(/410 Gone/);
    expect(await deliveryRow(ids[0]!)).toMatchObject({ status: "failed", attempts: 1, lastResponseStatus: 410 });
    expect((await publishOne(userId)).queued).toBe(0);
    await expectProblem(
      await call("POST", `/v1/webhooks/${webhook.id}/test`, { headers: user.headers }),
      409,
      "webhook_disabled",
    );
  });

  it("queues nothing more for an endpoint holding MAX_PENDING_DELIVERIES_PER_ENDPOINT undelivered events; its other endpoints still get them, and it does again once its backlog drains", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook: stuck } = await createWebhook(user);
    const { webhook: healthy } = await createWebhook(user, { url: "http://127.0.0.1:9/other" });
    // The stuck receiver's backlog, as days of failures leave it: pending rows waiting for a retry.
    const backlog = Array.from({ length: MAX_PENDING_DELIVERIES_PER_ENDPOINT }, () =>
      newDeliveryRow({ id: stuck.id, userId }, "deployment.active", { deployment: { id: "dep_old" } }, Date.now()),
    );
    for (let i = 0; i < backlog.length; i += 50) {
      const [first, ...rest] = backlog.slice(i, i + 50).map((row) => db.insert(webhookDeliveries).values(row));
      await db.batch([first!, ...rest]);
    }
    const { queued, ids } = await publishOne(userId);
    expect(queued).toBe(1);
    expect((await deliveryRow(ids[0]!))?.endpointId).toBe(healthy.id);
    // One delivery of the backlog ends: there is room for the next event again.
    await db.update(webhookDeliveries).set({ status: "failed" }).where(eq(webhookDeliveries.id, backlog[0]!.id));
    const after = await publishOne(userId);
    expect(after.queued).toBe(2);
    const endpoints = await Promise.all(after.ids.map(async (id) => (await deliveryRow(id))?.endpointId));
    expect(endpoints.sort()).toEqual([healthy.id, stuck.id].sort());
  });

  it("disables an endpoint that has had no successful delivery for 5 days, with the reason; a success in between resets the clock", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook } = await createWebhook(user);
    const t0 = Date.now();
    const failing = receiver(503);
    const first = await publishOne(userId, t0);
    expect(
      (await processDelivery(await deliveryDeps(failing.fetch), { deliveryId: first.ids[0]! }, { now: t0 })).action,
    ).toBe("retry");
    expect((await endpointRow(webhook.id))?.failingSince).toBe(t0);

    // A success clears it …
    const ok = await publishOne(userId, t0 + DAY_MS);
    await processDelivery(await deliveryDeps(receiver(200).fetch), { deliveryId: ok.ids[0]! }, { now: t0 + DAY_MS });
    expect((await endpointRow(webhook.id))?.failingSince).toBeNull();

    // … and failures from t1 on disable it five days later.
    const t1 = t0 + 2 * DAY_MS;
    const a = await publishOne(userId, t1);
    await processDelivery(await deliveryDeps(failing.fetch), { deliveryId: a.ids[0]! }, { now: t1 });
    const b = await publishOne(userId, t1 + DISABLE_AFTER_FAILING_MS - 1000);
    expect(
      (
        await processDelivery(
          await deliveryDeps(failing.fetch),
          { deliveryId: b.ids[0]! },
          { now: t1 + DISABLE_AFTER_FAILING_MS - 1000 },
        )
      ).action,
    ).toBe("retry");
    const c = await publishOne(userId, t1 + DISABLE_AFTER_FAILING_MS);
    expect(
      await processDelivery(
        await deliveryDeps(failing.fetch),
        { deliveryId: c.ids[0]! },
        { now: t1 + DISABLE_AFTER_FAILING_MS },
      ),
    ).toMatchObject({ action: "ack", result: "endpoint_disabled" });
    const got = await json(await call("GET", `/v1/webhooks/${webhook.id}`, { headers: user.headers }));
    expect(got.webhook).toMatchObject({ status: "disabled", failingSince: t1 });
    expect(got.webhook.disabledReason).toMatch(/no delivery succeeded for 5 days .*answered 503/);
    // A delivery still queued for it is not sent.
    const before = failing.received.length;
    expect(
      await processDelivery(
        await deliveryDeps(failing.fetch),
        { deliveryId: b.ids[0]! },
        { now: t1 + DISABLE_AFTER_FAILING_MS + 1 },
      ),
    ).toMatchObject({ action: "ack", result: "failed" });
    expect(failing.received.length).toBe(before);
  });

  it("signs with both secrets for 24 h after a rotation, then with the new one only", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook, secret: oldSecret } = await createWebhook(user);
    const res = await call("POST", `/v1/webhooks/${webhook.id}/rotate-secret`, { headers: user.headers });
    expect(res.status).toBe(200);
    const rotated = await json(res);
    const newSecret: string = rotated.secret;
    expect(newSecret).toMatch(/^whsec_/);
    expect(newSecret).not.toBe(oldSecret);
    const rotatedAt = rotated.webhook.updatedAt as number;
    expect(rotated.webhook.previousSecretExpiresAt).toBe(rotatedAt + ROTATION_OVERLAP_MS);

    const r = receiver(200);
    const during = await publishOne(userId, rotatedAt + 1000);
    await processDelivery(await deliveryDeps(r.fetch), { deliveryId: during.ids[0]! }, { now: rotatedAt + 1000 });
    const signed = r.received[0]!;
    const parts = signed.headers.get("webhook-signature")!.split(" ");
    expect(parts).toHaveLength(2);
    expect(parts.every((p) => /^v1,[A-Za-z0-9+/]{43}=$/.test(p))).toBe(true);
    expect(await signaturesMatching(newSecret, signed.headers, signed.body)).toBe(1);
    expect(await signaturesMatching(oldSecret, signed.headers, signed.body)).toBe(1);

    const after = await publishOne(userId, rotatedAt + ROTATION_OVERLAP_MS + 1);
    await processDelivery(
      await deliveryDeps(r.fetch),
      { deliveryId: after.ids[0]! },
      { now: rotatedAt + ROTATION_OVERLAP_MS + 1 },
    );
    const late = r.received[1]!;
    expect(late.headers.get("webhook-signature")!.split(" ")).toHaveLength(1);
    expect(await signaturesMatching(newSecret, late.headers, late.body)).toBe(1);
    expect(await signaturesMatching(oldSecret, late.headers, late.body)).toBe(0);
  });

  it("re-checks the receiver's address at send time: outside development a loopback URL is not sent to", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    await createWebhook(user, { url: "https://127.0.0.1:9/hooks" });
    const { ids } = await publishOne(userId);
    const r = receiver(200);
    expect(await processDelivery(await deliveryDeps(r.fetch, "production"), { deliveryId: ids[0]! })).toMatchObject({
      action: "ack",
      result: "failed",
    });
    expect(r.received).toEqual([]);
    expect((await deliveryRow(ids[0]!))?.lastError).toMatch(/not sent: the URL .*127\.0\.0\.1 is a private/);
  });

  it("does not follow redirects (a redirect could point anywhere) and retries them as failures", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    await createWebhook(user);
    const { ids } = await publishOne(userId);
    const seen: RequestInit[] = [];
    const redirecting = (async (_input: RequestInfo | URL, init?: RequestInit) => {
      seen.push(init ?? {});
      return new Response(null, { status: 302, headers: { location: "http://169.254.169.254/" } });
    }) as typeof fetch;
    expect(await processDelivery(await deliveryDeps(redirecting), { deliveryId: ids[0]! })).toMatchObject({
      action: "retry",
      delaySeconds: 30,
    });
    expect(seen[0]?.redirect).toBe("manual");
    expect(await deliveryRow(ids[0]!)).toMatchObject({ lastResponseStatus: 302 });
  });

  it("queues a test event through POST /test to that endpoint only, whatever it subscribes to", async () => {
    const user = await newUser();
    const { webhook } = await createWebhook(user, { events: ["usage.threshold"] });
    const res = await call("POST", `/v1/webhooks/${webhook.id}/test`, { headers: user.headers });
    expect(res.status).toBe(202);
    const { delivery } = await json(res);
    expect(delivery).toMatchObject({
      webhookId: webhook.id,
      eventType: "webhook.test",
      status: "pending",
      attempts: 0,
    });
    const row = await deliveryRow(delivery.id);
    expect(JSON.parse(row!.payload)).toMatchObject({ type: "webhook.test", data: { webhookId: webhook.id } });
  });
});

describe("what publishes events", () => {
  it("queues an event only for the user's enabled endpoints that subscribe to its type", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const stranger = await newUser();
    const subscribed = await createWebhook(user, { events: ["deployment.active"] });
    await createWebhook(user, { events: ["deployment.failed"] });
    await createWebhook(stranger, { events: ["deployment.active"] });
    const { ids } = await publishOne(userId);
    expect(ids).toHaveLength(1);
    expect((await deliveryRow(ids[0]!))?.endpointId).toBe(subscribed.webhook.id);
  });

  it("queues one delivery for each of a user's MAX_WEBHOOKS_PER_USER endpoints in one go", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    for (let i = 0; i < MAX_WEBHOOKS_PER_USER; i++) await createWebhook(user);
    const { queued, ids } = await publishOne(userId);
    expect(queued).toBe(MAX_WEBHOOKS_PER_USER);
    expect(new Set(ids).size).toBe(MAX_WEBHOOKS_PER_USER);
  });

  it("announces deployment.active, deployment.failed, deployment.ready and a rollback's deployment.active, without secret values", async () => {
    const user = await newUser();
    const { webhook } = await createWebhook(user, {
      events: ["deployment.active", "deployment.failed", "deployment.ready"],
    });
    const agent = await createAgent(user.headers);
    const secretValue = `s3cret-${crypto.randomUUID()}`;
    await call("PUT", `/v1/agents/${agent.id}/secrets/API_TOKEN`, {
      headers: user.headers,
      body: { value: secretValue },
    });
    const v1 = await deployAndActivate(user.headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
    const v2 = await deployAndActivate(user.headers, agent.id, { moduleCode: modules.fixedAnswer("v2") });
    const broken = await waitUntilSettled(
      user.headers,
      agent.id,
      (await deploy(user.headers, agent.id, { moduleCode: modules.THROWS_AT_LOAD })).id,
    );
    expect(broken.status).toBe("failed");
    const manual = await waitUntilSettled(
      user.headers,
      agent.id,
      (await deploy(user.headers, agent.id, { moduleCode: modules.fixedAnswer("v3"), activation: "manual" })).id,
    );
    expect(manual.status).toBe("ready");
    const rollback = await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, {
      headers: user.headers,
    });
    expect(rollback.status).toBe(200);

    const rows = await db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.endpointId, webhook.id))
      .orderBy(webhookDeliveries.id);
    const events = rows.map((r) => {
      const body = JSON.parse(r.payload);
      return [body.type, body.data.deployment.id, body.data.deployment.status];
    });
    expect(events).toEqual([
      ["deployment.active", v1.id, "active"],
      ["deployment.active", v2.id, "active"],
      ["deployment.failed", broken.id, "failed"],
      ["deployment.ready", manual.id, "ready"],
      ["deployment.active", v1.id, "active"],
    ]);
    const failedData = JSON.parse(rows[2]!.payload).data.deployment;
    expect(failedData.errorMessage).toMatch(/kaboom/);
    const ciphertexts = await env.DB.prepare(
      "SELECT telemetry_secret_ciphertext AS t, secrets_snapshot_ciphertext AS s FROM deployments WHERE agent_id = ?",
    )
      .bind(agent.id)
      .all<{ t: string; s: string | null }>();
    for (const r of rows) {
      expect(r.payload).not.toContain(secretValue);
      for (const c of ciphertexts.results) {
        expect(r.payload).not.toContain(c.t);
        if (c.s) expect(r.payload).not.toContain(c.s);
      }
    }
  });

  it("announces usage.threshold from the usage queue once metering has counted the invocations", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook } = await createWebhook(user, { events: ["usage.threshold"] });
    const queue = recordingQueue();
    const testEnv = {
      ...envWith({ TIER_LIMITS: JSON.stringify({ free: { invocationsPerPeriod: 4 } }) }),
      WEBHOOK_QUEUE: queue,
    } as unknown as typeof env;
    const measurement = () =>
      gatewayEvent(userId, "agt_threshold", { deploymentId: "dep_threshold", durationMs: 5, bytesIn: 1, bytesOut: 1 });
    const deliver = async (n: number) => {
      const batch = createMessageBatch(
        "usage-events",
        Array.from({ length: n }, (_, i) => ({ id: `m${i}`, timestamp: new Date(), attempts: 1, body: measurement() })),
      );
      const ctx = createExecutionContext();
      await handleQueue(batch, testEnv, ctx);
      expect((await getQueueResult(batch, ctx)).retryMessages).toEqual([]);
    };
    const percents = async () =>
      (await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.endpointId, webhook.id)))
        .map((r) => JSON.parse(r.payload).data.percent)
        .sort((a, b) => a - b);
    await deliver(1);
    expect(await percents()).toEqual([]);
    await deliver(1);
    expect(await percents()).toEqual([50]);
    await deliver(2);
    expect(await percents()).toEqual([50, 80, 100]);
    expect(queue.sent).toHaveLength(3);
  });

  it("announces usage.threshold at 50, 80 and 100% of the period's invocation quota, each once per period", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const { webhook } = await createWebhook(user, { events: ["usage.threshold"] });
    const tierLimits = { ...DEFAULT_TIER_LIMITS, free: { ...DEFAULT_TIER_LIMITS.free, invocationsPerPeriod: 10 } };
    const queue = recordingQueue();
    const deps = { db, webhookQueue: queue, tierLimits };
    const now = Date.UTC(2031, 4, 15);
    const period = "2031-05";
    const setRequests = (n: number) =>
      env.DB.prepare(
        `INSERT INTO billing_usage (id, user_id, period_key, agent_id, requests, updated_at) VALUES (?, ?, ?, 'agt_x', ?, ?)
         ON CONFLICT (user_id, period_key, agent_id) DO UPDATE SET requests = excluded.requests`,
      )
        .bind(`use_${crypto.randomUUID()}`, userId, period, n, now)
        .run();
    const batch = [{ userId, ts: now }];
    const thresholds = async () =>
      (await db.select().from(webhookDeliveries).where(eq(webhookDeliveries.endpointId, webhook.id)))
        .map((r) => JSON.parse(r.payload).data)
        .sort((a, b) => a.percent - b.percent);

    await setRequests(4);
    expect(await announceUsageThresholds(deps, batch, { now })).toEqual({ announced: 0 });
    await setRequests(5);
    expect(await announceUsageThresholds(deps, batch, { now })).toEqual({ announced: 1 });
    expect(await announceUsageThresholds(deps, batch, { now })).toEqual({ announced: 0 });
    await setRequests(10);
    expect(await announceUsageThresholds(deps, batch, { now })).toEqual({ announced: 2 });
    expect(await announceUsageThresholds(deps, batch, { now })).toEqual({ announced: 0 });
    expect(await thresholds()).toEqual([
      { periodKey: period, percent: 50, invocations: 5, limit: 10, tier: "free" },
      { periodKey: period, percent: 80, invocations: 10, limit: 10, tier: "free" },
      { periodKey: period, percent: 100, invocations: 10, limit: 10, tier: "free" },
    ]);
    expect(queue.sent).toHaveLength(3);
    // A user without a subscribed endpoint costs no threshold bookkeeping; a batch of many users is fine.
    const quiet = await userIdOf(await newUser());
    expect(await announceUsageThresholds(deps, [{ userId: quiet, ts: now }], { now })).toEqual({ announced: 0 });
    const many = Array.from({ length: 150 }, (_, i) => ({ userId: `usr_many${i}`, ts: now }));
    expect(await announceUsageThresholds(deps, [...many, ...batch], { now })).toEqual({ announced: 0 });
  });

  it("re-seals webhook secrets (current and previous) after an encryption key rotation; they still sign", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const [oldKey, newKey] = [randomKey(), randomKey()];
    const oldRing = await parseKeyring(oldKey);
    const deps = { db, userId, keyring: oldRing, environment: "development" };
    const { row, secret: first } = await createWebhookDirect(deps, { url: RECEIVER, events: ["deployment.active"] });
    const { secret: second } = await rotateWebhookSecret(deps, row.id);
    const both = await parseKeyring(newKey, oldKey);
    const report = await reencryptStaleSecrets({ db, keyring: both }, { batchSize: 50, maxBatches: 100_000 });
    expect(report.columns["webhook_endpoints.secret_ciphertext"].reencrypted).toBeGreaterThanOrEqual(1);
    expect(report.columns["webhook_endpoints.previous_secret_ciphertext"].reencrypted).toBeGreaterThanOrEqual(1);
    const sealed = await endpointRow(row.id);
    expect(envelopeKeyId(sealed!.secretCiphertext)).toBe(both.current.id);
    expect(envelopeKeyId(sealed!.previousSecretCiphertext!)).toBe(both.current.id);

    // With the old key gone, both secrets still sign.
    const newOnly = await parseKeyring(newKey);
    const { ids } = await publishOne(userId);
    const r = receiver(200);
    const sendDeps = { ...(await deliveryDeps(r.fetch)), keyring: newOnly };
    expect(await processDelivery(sendDeps, { deliveryId: ids[0]! })).toMatchObject({ result: "succeeded" });
    expect(await signaturesMatching(second, r.received[0]!.headers, r.received[0]!.body)).toBe(1);
    expect(await signaturesMatching(first, r.received[0]!.headers, r.received[0]!.body)).toBe(1);
  });

  it("the cron re-queues a pending delivery whose queue message was lost, and purges history after 30 days", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    await createWebhook(user);
    const t0 = Date.UTC(2020, 0, 1);
    const { ids } = await publishOne(userId, t0);
    const queue = recordingQueue();
    // Not yet overdue: nothing happens.
    await requeueStalledDeliveries({ db, webhookQueue: queue }, { now: t0 + STALLED_DELIVERY_MS - 1 });
    expect(queue.sent).not.toContainEqual({ deliveryId: ids[0] });
    await requeueStalledDeliveries({ db, webhookQueue: queue }, { now: t0 + STALLED_DELIVERY_MS + 1 });
    expect(queue.sent).toContainEqual({ deliveryId: ids[0] });
    // Re-queued once: the next run does not send it again while it is not overdue anew.
    const sent = queue.sent.length;
    await requeueStalledDeliveries({ db, webhookQueue: queue }, { now: t0 + STALLED_DELIVERY_MS + 2 });
    expect(queue.sent.length).toBe(sent);

    const recent = await publishOne(userId);
    await purgeOldDeliveries(db, { now: t0 + DELIVERY_RETENTION_MS + 1 });
    expect(await deliveryRow(ids[0]!)).toBeUndefined();
    expect(await deliveryRow(recent.ids[0]!)).toBeDefined();
  });
});
