// Invocation quota and per-tier body size through the HTTP API, with TIER_LIMITS overridden.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { expectProblem, json } from "./helpers/http";

const LIMITED = JSON.stringify({ free: { invocationsPerPeriod: 3, invokeBodyBytes: 2048 } });

/** The gateway with TIER_LIMITS overridden (and ctx.exports, which the loader runtime needs). */
async function callLimited(method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const ctx = createExecutionContext();
  Object.assign(ctx, { exports });
  const res = await worker.fetch(
    new Request(`http://gateway.test${path}`, {
      method,
      headers: { ...headers, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
    { ...env, TIER_LIMITS: LIMITED },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

describe("invocation limit per billing period", () => {
  it("allows the N-th invocation, refuses the next with 429 and RateLimit headers", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    await deployAndActivate(user.headers, agent.id);
    const seen = [];
    for (let i = 0; i < 3; i++) {
      const res = await callLimited("POST", `/v1/invoke/${agent.id}`, user.headers, userMessage(`hi ${i}`));
      expect(res.status).toBe(200);
      seen.push(res.headers.get("ratelimit"));
      await res.arrayBuffer();
    }
    expect(seen).toEqual([
      expect.stringMatching(/^"period";r=2;t=\d+$/),
      expect.stringMatching(/^"period";r=1;t=\d+$/),
      expect.stringMatching(/^"period";r=0;t=\d+$/),
    ]);
    for (const path of [`/v1/invoke/${agent.id}`, `/v1/invoke/${agent.id}/stream`]) {
      const refused = await callLimited("POST", path, user.headers, userMessage("one too many"));
      const problem = await expectProblem(refused, 429, "usage_limit_exceeded");
      expect(problem).toMatchObject({ limit: "invocationsPerPeriod", tier: "free", max: 3 });
      const retryAfter = Number(refused.headers.get("retry-after"));
      const now = new Date();
      const periodEnd = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
      expect(Math.abs(retryAfter - (periodEnd - Date.now()) / 1000)).toBeLessThan(5);
      expect(refused.headers.get("ratelimit-policy")).toMatch(/^"period";q=3;w=\d+$/);
      expect(refused.headers.get("ratelimit")).toBe(`"period";r=0;t=${retryAfter}`);
    }
    // Another user is not affected by this user's quota.
    const other = await newUser();
    const theirs = await createAgent(other.headers);
    await deployAndActivate(other.headers, theirs.id);
    expect((await callLimited("POST", `/v1/invoke/${theirs.id}`, other.headers, userMessage("hi"))).status).toBe(200);
  });

  it("refuses an invoke body over the tier's size with 413 naming the limit, without using quota", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    await deployAndActivate(user.headers, agent.id);
    const big = userMessage("x".repeat(3000));
    const problem = await expectProblem(
      await callLimited("POST", `/v1/invoke/${agent.id}`, user.headers, big),
      413,
      "payload_too_large",
    );
    expect(problem).toMatchObject({ limit: "invokeBodyBytes", tier: "free", limitBytes: 2048 });
    const ok = await callLimited("POST", `/v1/invoke/${agent.id}`, user.headers, userMessage("small"));
    expect(ok.status).toBe(200);
    expect(ok.headers.get("ratelimit")).toMatch(/r=2;/);
    expect((await json(ok)).output.text).toContain("small");
  });
});

describe("metering", () => {
  it("counts concurrent invocations exactly once each, JSON and stream, in billing_usage", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    await deployAndActivate(user.headers, agent.id);
    const calls = Array.from({ length: 24 }, (_, i) =>
      exports.default.fetch(
        new Request(`http://gateway.test/v1/invoke/${agent.id}${i % 3 === 0 ? "/stream" : ""}`, {
          method: "POST",
          headers: { ...user.headers, "content-type": "application/json" },
          body: JSON.stringify(userMessage(`concurrent ${i}`)),
        }),
      ),
    );
    const responses = await Promise.all(calls);
    for (const r of responses) {
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    }
    // The usage queue meters in batches: poll until the counter settles (bounded).
    const db = env.DB;
    let requests = 0;
    for (let i = 0; i < 100 && requests < 24; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const row = await db
        .prepare(
          "SELECT COALESCE(SUM(requests), 0) AS n FROM billing_usage WHERE user_id = (SELECT id FROM users WHERE auth_subject = ?)",
        )
        .bind(user.subject)
        .first<{ n: number }>();
      requests = row?.n ?? 0;
    }
    expect(requests).toBe(24);
    const events = await db
      .prepare(
        "SELECT COUNT(*) AS n, SUM(streaming) AS s FROM metrics_events WHERE agent_id = ? AND source = 'gateway'",
      )
      .bind(agent.id)
      .first<{ n: number; s: number }>();
    expect(events).toEqual({ n: 24, s: 8 });
    // Nothing more arrives later (no double counting from redelivery or the direct-write fallback).
    await new Promise((r) => setTimeout(r, 2500));
    const after = await db
      .prepare("SELECT COALESCE(SUM(requests), 0) AS n FROM billing_usage WHERE agent_id = ?")
      .bind(agent.id)
      .first<{ n: number }>();
    expect(after?.n).toBe(24);
  });
});
