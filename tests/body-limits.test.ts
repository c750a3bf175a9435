// How much of a request body the gateway reads before it answers. Bodies here are streams that
// count the bytes the gateway pulls from them, sent through the worker's own fetch handler (the
// Workers test pool: nothing in between buffers the body), so "answered before reading" is
// measured, not inferred from timing.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { TELEMETRY_MAX_BODY_BYTES } from "../src/services/telemetry/event";
import { DEFAULT_TIER_LIMITS } from "../src/services/usage/tiers";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate } from "./helpers/deploy-flow";
import { expectProblem, json } from "./helpers/http";

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 16 * KiB;

/** A JSON-looking body of `totalBytes`, produced one CHUNK per pull; `pulled()` is how much was read. */
function countingBody(totalBytes: number) {
  let pulled = 0;
  let cancelled = false;
  const chunk = new TextEncoder().encode("x".repeat(CHUNK));
  const head = new TextEncoder().encode(`{"messages":[{"role":"user","content":"`);
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (pulled >= totalBytes) {
          controller.close();
          return;
        }
        const next = pulled === 0 ? head : chunk.subarray(0, Math.min(CHUNK, totalBytes - pulled));
        pulled += next.byteLength;
        controller.enqueue(next);
      },
      cancel() {
        cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, pulled: () => pulled, cancelled: () => cancelled };
}

async function send(path: string, body: ReadableStream<Uint8Array>, headers: Record<string, string> = {}) {
  const request = new Request(`http://gateway.test${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  return exports.default.fetch(request);
}

/** Lets the runtime run whatever it would still do with the body after the answer. */
async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
}

describe("a request without credentials", () => {
  it("is answered 401 before its body is read (invoke, stream, deploy)", async () => {
    for (const path of [
      "/v1/invoke/agt_00000000000000000000000000",
      "/v1/invoke/agt_00000000000000000000000000/stream",
      "/v1/agents/agt_00000000000000000000000000/deploy",
    ]) {
      const body = countingBody(9 * MiB);
      await expectProblem(await send(path, body.stream), 401, "unauthenticated");
      await settle();
      expect(body.pulled(), path).toBeLessThan(64 * KiB);
    }
  });

  it("with a bad token is answered 401 before its body is read", async () => {
    const body = countingBody(9 * MiB);
    const res = await send("/v1/invoke/agt_00000000000000000000000000", body.stream, {
      authorization: "Bearer not.a.token",
    });
    await expectProblem(res, 401, "invalid_token");
    await settle();
    expect(body.pulled()).toBeLessThan(64 * KiB);
  });
});

describe("an oversize body from a signed-in caller", () => {
  it("invoke: reading stops at the caller's tier limit (413 with the tier's limit), not at the end of the body", async () => {
    const user = await newUser("body-limit");
    const agent = await createAgent(user.headers);
    await deployAndActivate(user.headers, agent.id);
    const limit = DEFAULT_TIER_LIMITS.free.invokeBodyBytes;
    for (const path of [`/v1/invoke/${agent.id}`, `/v1/invoke/${agent.id}/stream`]) {
      const body = countingBody(9 * MiB);
      const problem = await expectProblem(await send(path, body.stream, user.headers), 413, "payload_too_large");
      expect(problem).toMatchObject({ limit: "invokeBodyBytes", tier: "free", limitBytes: limit });
      await settle();
      expect(body.pulled(), path).toBeGreaterThan(limit);
      expect(body.pulled(), path).toBeLessThanOrEqual(limit + 2 * CHUNK);
    }
  });

  it("deploy: reading stops at the route's limit", async () => {
    const user = await newUser("body-limit");
    const agent = await createAgent(user.headers);
    const body = countingBody(9 * MiB);
    const problem = await expectProblem(
      await send(`/v1/agents/${agent.id}/deploy`, body.stream, user.headers),
      413,
      "payload_too_large",
    );
    await settle();
    // The deploy body may be twice the plan's bundleBytes plus 64 KiB (the problem names bundleBytes).
    expect(problem.limitBytes).toBe(DEFAULT_TIER_LIMITS.free.bundleBytes);
    const bodyLimit = 2 * DEFAULT_TIER_LIMITS.free.bundleBytes + 64 * 1024;
    expect(body.pulled()).toBeGreaterThan(bodyLimit);
    expect(body.pulled()).toBeLessThanOrEqual(bodyLimit + 2 * CHUNK);
  });

  it("a declared Content-Length over the limit is refused without reading the body", async () => {
    const user = await newUser("body-limit");
    const agent = await createAgent(user.headers);
    const res = await exports.default.fetch(
      new Request(`http://gateway.test/v1/invoke/${agent.id}`, {
        method: "POST",
        headers: { ...user.headers, "content-type": "application/json" },
        body: "x".repeat(2 * MiB),
      }),
    );
    const problem = await expectProblem(res, 413, "payload_too_large");
    expect(problem.limitBytes).toBe(DEFAULT_TIER_LIMITS.free.invokeBodyBytes);
  });

  it("a body within the limit still arrives whole", async () => {
    const user = await newUser("body-limit");
    const agent = await createAgent(user.headers);
    await deployAndActivate(user.headers, agent.id);
    const text = "y".repeat(200 * KiB);
    const bytes = new TextEncoder().encode(JSON.stringify({ messages: [{ role: "user", content: text }] }));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < bytes.length; at += CHUNK) controller.enqueue(bytes.slice(at, at + CHUNK));
        controller.close();
      },
    });
    const res = await send(`/v1/invoke/${agent.id}`, stream, user.headers);
    expect(res.status).toBe(200);
    expect(await json(res)).toHaveProperty("output");
  });
});

describe("the public telemetry report", () => {
  it("stops reading an oversize chunked body at its limit", async () => {
    const body = countingBody(9 * MiB);
    const problem = await expectProblem(
      await send("/v1/telemetry/report", body.stream, {
        "x-telemetry-signature": `v1=${"0".repeat(64)}`,
        "x-telemetry-deployment-id": "dep_00000000000000000000000000",
      }),
      413,
      "payload_too_large",
    );
    expect(problem.limitBytes).toBe(TELEMETRY_MAX_BODY_BYTES);
    await settle();
    expect(body.pulled()).toBeLessThanOrEqual(TELEMETRY_MAX_BODY_BYTES + 2 * CHUNK);
  });
});
