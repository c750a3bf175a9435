// The hostile-input catalogue across every route: mass assignment on every body-taking route,
// hostile `limit` values on every list route, oversize strings, arrays, paths and tokens, and
// oversize bodies (with and without Content-Length) refused before any side effect.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DEFAULT_TIER_LIMITS } from "../src/services/usage/tiers";

const MODULE_CODE_MAX_BYTES = DEFAULT_TIER_LIMITS.free.bundleBytes;

import * as modules from "./fixtures/modules";
import { callWithEnv, recordingQueue } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { AUTHZ_MATRIX, methodOf } from "./helpers/authz-matrix";
import { createAgent, deployAndActivate, userIdOf, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { tenantState } from "./helpers/state";

/** Counts the POSTs it receives (per isolate, i.e. per deployment) and answers the count. */
const POST_COUNTER = `let posts = 0;
export default {
  async fetch(req) {
    if (req.method === "GET") return new Response("ok");
    posts++;
    return Response.json({ output: { text: String(posts) } });
  },
};`;

/** A user with an agent running POST_COUNTER, an earlier deployment and a secret. */
async function setup() {
  const user = await newUser("hostile");
  const agent = await createAgent(user.headers);
  const previous = await deployAndActivate(user.headers, agent.id, { moduleCode: modules.fixedAnswer("previous") });
  const active = await deployAndActivate(user.headers, agent.id, { moduleCode: POST_COUNTER });
  const put = await call("PUT", `/v1/agents/${agent.id}/secrets/KEEP`, {
    headers: user.headers,
    body: { value: "keep-me" },
  });
  expect(put.status).toBe(201);
  const userId = await userIdOf(user.subject);
  /** How many POSTs reached the user script; counting is itself one more. */
  const postsSeen = async () => {
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers: user.headers, body: userMessage("count") });
    expect(res.status).toBe(200);
    return Number((await json(res)).output.text) - 1;
  };
  return { ...user, agent, previous, active, userId, postsSeen };
}

/** `base` as JSON text with one more key; written by hand so that `__proto__` is an own key. */
function withKey(base: Record<string, unknown>, key: string, value: unknown): string {
  return `${JSON.stringify(base).slice(0, -1)},${JSON.stringify(key)}:${JSON.stringify(value)}}`;
}

const SERVER_OWNED: Array<[string, unknown]> = [
  ["id", "agt_00000000000000000000000000"],
  ["userId", "usr_00000000000000000000000000"],
  ["status", "active"],
  ["activeDeploymentId", "dep_00000000000000000000000000"],
  ["__proto__", { status: "disabled", userId: "usr_00000000000000000000000000", polluted: "yes" }],
  ["constructor", { prototype: { polluted: "yes" } }],
];

const chunked = (text: string) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      const bytes = new TextEncoder().encode(text);
      for (let at = 0; at < bytes.length; at += 64 * 1024) controller.enqueue(bytes.slice(at, at + 64 * 1024));
      controller.close();
    },
  });

describe("mass assignment", () => {
  it("refuses id, userId, status, activeDeploymentId, __proto__ and constructor on every body-taking route, changing nothing", async () => {
    const s = await setup();
    const queue = recordingQueue();
    const routes: Array<[string, string, Record<string, unknown>]> = [
      ["POST", "/v1/agents", { name: "mass-assigned" }],
      ["PATCH", `/v1/agents/${s.agent.id}`, { description: "mass-assigned" }],
      ["POST", `/v1/agents/${s.agent.id}/deploy`, { moduleCode: modules.fixedAnswer("mass-assigned") }],
      ["PUT", `/v1/agents/${s.agent.id}/secrets/KEEP`, { value: "mass-assigned" }],
      ["PUT", `/v1/agents/${s.agent.id}/secrets/NEW_ONE`, { value: "mass-assigned" }],
      ["POST", `/v1/invoke/${s.agent.id}`, userMessage("mass-assigned")],
      ["POST", `/v1/invoke/${s.agent.id}/stream`, userMessage("mass-assigned")],
    ];
    const before = await tenantState(s.userId);
    for (const [method, path, base] of routes) {
      for (const [key, value] of SERVER_OWNED) {
        const res = await callWithEnv({ DEPLOY_QUEUE: queue }, method, path, {
          headers: { ...s.headers, "content-type": "application/json" },
          rawBody: withKey(base, key, value),
        });
        const problem = await expectProblem(res, 400, "validation_failed");
        expect(
          problem.errors.map((e: { location: string }) => e.location),
          `${method} ${path} with ${key}`,
        ).toEqual([`body.${key}`]);
      }
    }
    expect(await tenantState(s.userId)).toEqual(before);
    expect(queue.sent).toEqual([]);
    expect(await s.postsSeen()).toBe(0);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty("status");
  });

  it("never reads a body on the routes that take none: disable and activate act on the path alone", async () => {
    const s = await setup();
    const jsonHeaders = { ...s.headers, "content-type": "application/json" };
    const activated = await call("POST", `/v1/agents/${s.agent.id}/deployments/${s.previous.id}/activate`, {
      headers: jsonHeaders,
      rawBody: withKey({ deploymentId: s.active.id, status: "failed", activeDeploymentId: s.active.id }, "__proto__", {
        status: "failed",
      }),
    });
    expect(activated.status).toBe(200);
    expect((await json(activated)).deployment).toMatchObject({ id: s.previous.id, status: "active" });
    const disabled = await call("POST", `/v1/agents/${s.agent.id}/disable`, {
      headers: jsonHeaders,
      body: { status: "active", activeDeploymentId: s.active.id, userId: "usr_00000000000000000000000000" },
    });
    expect((await json(disabled)).agent).toMatchObject({ status: "disabled", activeDeploymentId: s.previous.id });
    const row = await env.DB.prepare("SELECT user_id, status, active_deployment_id FROM agents WHERE id = ?")
      .bind(s.agent.id)
      .first();
    expect(row).toEqual({ user_id: s.userId, status: "disabled", active_deployment_id: s.previous.id });
  });

  it("passes __proto__ and constructor keys of free-form invoke metadata along as data, polluting nothing", async () => {
    const s = await setup();
    const rawBody = `{"messages":[{"role":"user","content":"x"}],"metadata":{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"ok":1}}`;
    const res = await call("POST", `/v1/invoke/${s.agent.id}`, {
      headers: { ...s.headers, "content-type": "application/json" },
      rawBody,
    });
    expect(res.status).toBe(200);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty("polluted");
  });
});

describe("list limits", () => {
  it("refuses limit=1e9, -1, NaN, 1.5 and other non-integers or out-of-range values on every list route, and accepts the maximum", async () => {
    const s = await setup();
    const webhook = await json(
      await call("POST", "/v1/webhooks", {
        headers: s.headers,
        body: { url: "http://127.0.0.1:9/hostile", events: ["usage.threshold"] },
      }),
    );
    const webhookId: string = webhook.webhook.id;
    const doc = await json(await call("GET", "/openapi.json"));
    const listRoutes: Array<{ path: string; max: number }> = [];
    for (const [path, item] of Object.entries<Record<string, any>>(doc.paths)) {
      const limit = item.get?.parameters?.find((p: any) => p.name === "limit" && p.in === "query");
      if (limit) {
        const concrete = path.replace("{agentId}", s.agent.id).replace("{webhookId}", webhookId);
        listRoutes.push({ path: concrete, max: limit.schema.maximum });
      }
    }
    expect(
      listRoutes.map((r) => r.path.replace(s.agent.id, "{agentId}").replace(webhookId, "{webhookId}")).sort(),
    ).toEqual([
      "/v1/agents",
      "/v1/agents/{agentId}/deployments",
      "/v1/agents/{agentId}/logs",
      "/v1/agents/{agentId}/rollouts",
      "/v1/audit",
      "/v1/metrics/recent",
      "/v1/webhooks/{webhookId}/deliveries",
    ]);
    const hostile = ["1e9", "-1", "NaN", "1.5", "0", "", " 1", "0x10", "Infinity", "99999999999999999999999"];
    for (const { path, max } of listRoutes) {
      // metrics/recent needs the agent; the other routes ignore the extra parameter.
      const url = (limit: string) => `${path}?agentId=${s.agent.id}&limit=${encodeURIComponent(limit)}`;
      for (const limit of [...hostile, String(max + 1)]) {
        const problem = await expectProblem(
          await call("GET", url(limit), { headers: s.headers }),
          400,
          "validation_failed",
        );
        expect(
          problem.errors.map((e: { location: string }) => e.location),
          `${path} limit=${limit}`,
        ).toEqual(["query.limit"]);
      }
      const repeated = await call("GET", `${url("1")}&limit=2`, { headers: s.headers });
      await expectProblem(repeated, 400, "validation_failed");
      expect((await call("GET", url(String(max)), { headers: s.headers })).status, `${path} limit=${max}`).toBe(200);
    }
  });
});

describe("oversize strings and arrays", () => {
  it("refuses 1001 messages (400), 100 000 messages and a 2 MB message (413); the agent sees none of them", async () => {
    const s = await setup();
    const messages = (n: number) => Array.from({ length: n }, () => ({ role: "user", content: "x" }));
    for (const path of [`/v1/invoke/${s.agent.id}`, `/v1/invoke/${s.agent.id}/stream`]) {
      const many = await expectProblem(
        await call("POST", path, { headers: s.headers, body: { messages: messages(1001) } }),
        400,
        "validation_failed",
      );
      expect(many.errors).toEqual([{ location: "body.messages", message: expect.stringContaining("1000") }]);
      await expectProblem(
        await call("POST", path, { headers: s.headers, body: { messages: messages(100_000) } }),
        413,
        "payload_too_large",
      );
      await expectProblem(
        await call("POST", path, { headers: s.headers, body: userMessage("x".repeat(2 * 1024 * 1024)) }),
        413,
        "payload_too_large",
      );
      await expectProblem(
        await call("POST", path, { headers: s.headers, body: { ...userMessage("x"), sessionId: "s".repeat(201) } }),
        400,
        "validation_failed",
      );
    }
    expect(await s.postsSeen()).toBe(0);
  });

  it("accepts deeply nested free-form metadata without failing (no 500)", async () => {
    const s = await setup();
    const depth = 100_000;
    const rawBody = `{"messages":[{"role":"user","content":"x"}],"metadata":{"deep":${"[".repeat(depth)}${"]".repeat(depth)}}}`;
    const res = await call("POST", `/v1/invoke/${s.agent.id}`, {
      headers: { ...s.headers, "content-type": "application/json" },
      rawBody,
    });
    expect(res.status).toBe(200);
  });

  it("answers oversize path parameters on every route with a 4xx problem, never a 500", async () => {
    const s = await setup();
    const huge = "a".repeat(10_000);
    for (const row of AUTHZ_MATRIX) {
      if (!row.route.includes("{")) continue;
      const path = row.route
        .split(" ")[1]!
        .replace("{agentId}", huge)
        .replace("{deploymentId}", `dep_${huge}`)
        .replace("{name}", huge.toUpperCase());
      const body = path.includes("/invoke/") ? userMessage("x") : path.includes("/secrets/") ? { value: "v" } : {};
      const res = await call(methodOf(row), path, {
        headers: s.headers,
        body: methodOf(row) === "GET" ? undefined : body,
      });
      expect(res.status, row.route).toBeGreaterThanOrEqual(400);
      expect(res.status, row.route).toBeLessThan(500);
      expect(res.headers.get("content-type"), row.route).toMatch(/^application\/problem\+json/);
    }
    for (const query of [`agentId=${huge}`, `agentId=${s.agent.id}&sinceMs=${"9".repeat(5000)}`]) {
      await expectProblem(
        await call("GET", `/v1/metrics/recent?${query}`, { headers: s.headers }),
        400,
        "validation_failed",
      );
    }
    await expectProblem(
      await call("GET", `/v1/agents?cursor=${huge}`, { headers: s.headers }),
      400,
      "validation_failed",
    );
  });

  it("answers a 100 KB bearer token with 401 invalid_token", async () => {
    await expectProblem(
      await call("GET", "/v1/agents", { headers: { authorization: `Bearer ${"a".repeat(100_000)}.b.c` } }),
      401,
      "invalid_token",
    );
  });
});

describe("oversize bodies are refused before any side effect", () => {
  it("deploy: a module over the limit, with and without Content-Length, stores nothing and enqueues nothing", async () => {
    const s = await setup();
    const queue = recordingQueue();
    const before = await tenantState(s.userId);
    const marker = crypto.randomUUID();
    const overModule = `// ${marker}\n//${"x".repeat(MODULE_CODE_MAX_BYTES)}`;
    const overBody = `{"moduleCode":${JSON.stringify(`// ${marker}\n${"x".repeat(3 * MODULE_CODE_MAX_BYTES)}`)}}`;
    const path = `/v1/agents/${s.agent.id}/deploy`;
    const headers = { ...s.headers, "content-type": "application/json" };
    for (const rawBody of [JSON.stringify({ moduleCode: overModule }), overBody]) {
      await expectProblem(
        await callWithEnv({ DEPLOY_QUEUE: queue }, "POST", path, { headers, rawBody }),
        413,
        "payload_too_large",
      );
      await expectProblem(
        await callWithEnv({ DEPLOY_QUEUE: queue }, "POST", path, { headers, rawBody: chunked(rawBody) }),
        413,
        "payload_too_large",
      );
    }
    expect(queue.sent).toEqual([]);
    expect(await tenantState(s.userId)).toEqual(before);
    const stored = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM deployment_artifacts WHERE instr(module_code, ?) > 0",
    )
      .bind(marker)
      .first<{ n: number }>();
    expect(stored?.n).toBe(0);
  });

  it("secrets, agent update and invoke: an oversize body, with and without Content-Length, changes nothing and reaches no agent", async () => {
    const s = await setup();
    const before = await tenantState(s.userId);
    const headers = { ...s.headers, "content-type": "application/json" };
    const cases: Array<[string, string, string]> = [
      ["PUT", `/v1/agents/${s.agent.id}/secrets/KEEP`, JSON.stringify({ value: "v".repeat(100_000) })],
      ["PUT", `/v1/agents/${s.agent.id}/secrets/BIG`, JSON.stringify({ value: "v".repeat(100_000) })],
      ["PATCH", `/v1/agents/${s.agent.id}`, JSON.stringify({ description: "d".repeat(100_000) })],
      ["POST", `/v1/invoke/${s.agent.id}`, JSON.stringify(userMessage("m".repeat(1_100_000)))],
      ["POST", `/v1/invoke/${s.agent.id}/stream`, JSON.stringify(userMessage("m".repeat(1_100_000)))],
    ];
    for (const [method, path, rawBody] of cases) {
      await expectProblem(await call(method, path, { headers, rawBody }), 413, "payload_too_large");
      await expectProblem(await call(method, path, { headers, rawBody: chunked(rawBody) }), 413, "payload_too_large");
    }
    expect(await tenantState(s.userId)).toEqual(before);
    expect(await s.postsSeen()).toBe(0);
  });
});
