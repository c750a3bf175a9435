// Lifecycle webhooks over HTTP against `wrangler dev`, with a real receiver on 127.0.0.1
// (tests/e2e/webhook-receiver.ts) that checks every Standard Webhooks signature with its own
// implementation. The dev server runs with WEBHOOK_RETRY_BASE_SECONDS=1 (global-setup.ts), so a
// failing receiver is retried after 1 s, 2 s, 4 s … instead of 30 s, 1 min, 2 min ….
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, expectJson, expectProblem, newUser, type User, waitFor } from "./harness.ts";
import {
  type ReceivedWebhook,
  startWebhookReceiver,
  verifiedSignatures,
  type WebhookReceiver,
} from "./webhook-receiver.ts";

let receiver: WebhookReceiver;
beforeAll(async () => {
  receiver = await startWebhookReceiver();
});
afterAll(async () => {
  await receiver?.stop();
});

type Created = { webhook: { id: string; status: string }; secret: string };

async function createWebhook(user: User, path: string, events: string[]): Promise<Created> {
  return expectJson(
    await api("POST", "/v1/webhooks", { user, body: { url: `${receiver.baseUrl}${path}`, events } }),
    201,
  );
}

/** The requests the receiver got on `path`, once there are at least `n`. */
function receivedOn(path: string, n = 1, timeoutMs = 15_000): Promise<ReceivedWebhook[]> {
  return waitFor(
    `${n} webhook(s) on ${path}`,
    async () => {
      const got = receiver.received.filter((r) => r.path === path);
      return got.length >= n ? got : undefined;
    },
    { timeoutMs },
  );
}

async function deliveries(user: User, webhookId: string): Promise<any[]> {
  return (await expectJson(await api("GET", `/v1/webhooks/${webhookId}/deliveries`, { user }), 200)).deliveries;
}

describe("lifecycle webhooks over HTTP", () => {
  it("delivers a test event and a deployment's deployment.active, each signed per Standard Webhooks", async () => {
    const owner = await newUser("webhooks");
    const tag = `/a${Date.now()}`;
    const path = `${tag}/ok`;
    const { webhook, secret } = await createWebhook(owner, path, ["deployment.active", "deployment.failed"]);
    expect(secret).toMatch(/^whsec_/);

    const { delivery } = await expectJson(await api("POST", `/v1/webhooks/${webhook.id}/test`, { user: owner }), 202);
    const [test] = await receivedOn(path);
    expect(test!.headers["webhook-id"]).toBe(delivery.id);
    expect(test!.headers["content-type"]).toBe("application/json");
    expect(verifiedSignatures(secret, test!)).toBe(1);
    expect(verifiedSignatures(secret, { ...test!, body: test!.body.replace("test", "tesT") })).toBe(0);
    expect(JSON.parse(test!.body)).toMatchObject({ type: "webhook.test", data: { webhookId: webhook.id } });
    await waitFor("the test delivery recorded as succeeded", async () => {
      const [d] = await deliveries(owner, webhook.id);
      return d?.status === "succeeded" ? d : undefined;
    }).then((d) => expect(d).toMatchObject({ id: delivery.id, attempts: 1, lastResponseStatus: 204 }));

    // A real deploy announces itself.
    const { agent } = await expectJson(
      await api("POST", "/v1/agents", { user: owner, body: { name: `hooks-${Date.now()}` } }),
      201,
    );
    const { deployment } = await expectJson(await api("POST", `/v1/agents/${agent.id}/deploy`, { user: owner }), 202);
    const got = await receivedOn(path, 2);
    const active = got[1]!;
    expect(verifiedSignatures(secret, active)).toBe(1);
    expect(JSON.parse(active.body)).toMatchObject({
      type: "deployment.active",
      data: { deployment: { id: deployment.id, agentId: agent.id, status: "active" } },
    });

    // The stranger reaches none of it.
    const stranger = await newUser("stranger");
    for (const [method, p] of [
      ["GET", `/v1/webhooks/${webhook.id}`],
      ["GET", `/v1/webhooks/${webhook.id}/deliveries`],
      ["POST", `/v1/webhooks/${webhook.id}/test`],
      ["POST", `/v1/webhooks/${webhook.id}/rotate-secret`],
      ["DELETE", `/v1/webhooks/${webhook.id}`],
    ] as const) {
      await expectProblem(await api(method, p, { user: stranger }), 404, "not_found");
    }
    const theirs = await expectJson(await api("GET", "/v1/webhooks", { user: stranger }), 200);
    expect(theirs.webhooks).toEqual([]);
    expect(receiver.received.filter((r) => r.path === path)).toHaveLength(2);
  });

  it("after rotate-secret, signs with the new and the old secret (two signatures), both verifiable", async () => {
    const owner = await newUser("rotate");
    const path = `/r${Date.now()}/ok`;
    const { webhook, secret: oldSecret } = await createWebhook(owner, path, ["deployment.ready"]);
    const rotated = await expectJson(
      await api("POST", `/v1/webhooks/${webhook.id}/rotate-secret`, { user: owner }),
      200,
    );
    expect(rotated.secret).not.toBe(oldSecret);
    await expectJson(await api("POST", `/v1/webhooks/${webhook.id}/test`, { user: owner }), 202);
    const [message] = await receivedOn(path);
    expect(message!.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(verifiedSignatures(rotated.secret, message!)).toBe(1);
    expect(verifiedSignatures(oldSecret, message!)).toBe(1);
  });

  it("retries a receiver that answers 500 with growing delays, recording each attempt", async () => {
    const owner = await newUser("retry");
    const path = `/f${Date.now()}/fail`;
    const { webhook } = await createWebhook(owner, path, ["deployment.active"]);
    const { delivery } = await expectJson(await api("POST", `/v1/webhooks/${webhook.id}/test`, { user: owner }), 202);
    const attempts = await receivedOn(path, 3, 25_000);
    // The same message every time, retried after ~1 s and then ~2 s (WEBHOOK_RETRY_BASE_SECONDS=1).
    expect(new Set(attempts.map((a) => a.headers["webhook-id"]))).toEqual(new Set([delivery.id]));
    const gap1 = attempts[1]!.at - attempts[0]!.at;
    const gap2 = attempts[2]!.at - attempts[1]!.at;
    expect(gap1).toBeGreaterThanOrEqual(900);
    expect(gap2).toBeGreaterThanOrEqual(1800);
    expect(gap2).toBeGreaterThan(gap1);
    const recorded = await waitFor("three attempts recorded", async () => {
      const [d] = await deliveries(owner, webhook.id);
      return d && d.attempts >= 3 ? d : undefined;
    });
    expect(recorded).toMatchObject({ id: delivery.id, status: "pending", lastResponseStatus: 500 });
    expect(recorded.lastError).toMatch(/answered 500/);
    expect(recorded.nextAttemptAt).toBeGreaterThan(recorded.lastAttemptAt);
    const { webhook: now } = await expectJson(await api("GET", `/v1/webhooks/${webhook.id}`, { user: owner }), 200);
    expect(now).toMatchObject({ status: "enabled", failingSince: expect.any(Number) });
    // Deleting the endpoint stops the retries.
    expect((await api("DELETE", `/v1/webhooks/${webhook.id}`, { user: owner })).status).toBe(204);
  });

  it("disables an endpoint whose receiver answers 410 Gone, and says why", async () => {
    const owner = await newUser("gone");
    const path = `/g${Date.now()}/gone`;
    const { webhook } = await createWebhook(owner, path, ["deployment.active"]);
    await expectJson(await api("POST", `/v1/webhooks/${webhook.id}/test`, { user: owner }), 202);
    await receivedOn(path);
    const disabled = await waitFor("the endpoint disabled", async () => {
      const { webhook: w } = await expectJson(await api("GET", `/v1/webhooks/${webhook.id}`, { user: owner }), 200);
      return w.status === "disabled" ? w : undefined;
    });
    expect(disabled.disabledReason).toMatch(/410 Gone/);
    const [d] = await deliveries(owner, webhook.id);
    expect(d).toMatchObject({ status: "failed", attempts: 1, lastResponseStatus: 410 });
    await expectProblem(await api("POST", `/v1/webhooks/${webhook.id}/test`, { user: owner }), 409, "webhook_disabled");
    // Nothing more reaches it.
    await new Promise((r) => setTimeout(r, 1500));
    expect(receiver.received.filter((r) => r.path === path)).toHaveLength(1);
  });

  it("answers bad input with 400", async () => {
    const owner = await newUser("bad");
    const problem = await expectProblem(
      await api("POST", "/v1/webhooks", { user: owner, body: { url: "ftp://example.com/x", events: ["nope"] } }),
      400,
      "validation_failed",
    );
    expect(problem.errors?.map((e) => e.location)).toEqual(expect.arrayContaining(["body.events.0"]));
  });
});
