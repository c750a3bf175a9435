// The egress door: every outbound fetch() of a loaded agent goes through the gateway's Egress
// entrypoint (globalOutbound). The door's own upstream fetch is the test isolate's global fetch
// (the door runs in this isolate, reached through ctx.exports), replaced here by a fake
// OpenAI-compatible provider and a fake public host; the agent's fetch never sees the stub.
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userIdOf, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { waitFor } from "./helpers/wait";

/** An agent that makes the outbound calls its first message lists and answers what each got. */
const CALLER = `export default {
  async fetch(req) {
    if (req.method === "GET") return new Response("ok");
    const { messages } = await req.json();
    const calls = JSON.parse(messages[0].content);
    const results = [];
    for (const c of calls) {
      try {
        if (c.connect) {
          const { connect } = await import("cloudflare:sockets");
          const socket = connect(c.connect);
          const writer = socket.writable.getWriter();
          await writer.write(new TextEncoder().encode("GET / HTTP/1.0\\r\\n\\r\\n"));
          const read = await socket.readable.getReader().read();
          results.push({ connected: true, read: read.done ? "eof" : "data" });
          continue;
        }
        const res = await fetch(c.url, { method: c.method ?? "GET", headers: c.headers, body: c.body });
        const chunks = [];
        if (c.chunks && res.body) {
          const reader = res.body.getReader();
          const dec = new TextDecoder();
          for (;;) { const r = await reader.read(); if (r.done) break; chunks.push(dec.decode(r.value)); }
          results.push({ status: res.status, chunks });
        } else {
          results.push({ status: res.status, contentType: res.headers.get("content-type"), body: await res.text() });
        }
      } catch (e) {
        results.push({ threw: String(e && e.message || e) });
      }
    }
    return Response.json({ output: { text: JSON.stringify(results) } });
  },
};`;

type Seen = { url: string; authorization: string | null; body: string };

const PLATFORM_KEY = "sk-platform-test-key";

function fakeUpstream(seen: Seen[]) {
  return async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const body = req.method === "GET" ? "" : await req.text();
    seen.push({ url: req.url, authorization: req.headers.get("authorization"), body });
    const url = new URL(req.url);
    if (url.hostname === "api.openai.fake" && url.pathname === "/v1/chat/completions") {
      const parsed = JSON.parse(body);
      if (parsed.stream) {
        const enc = new TextEncoder();
        const events = [
          { model: "gpt-fake", choices: [{ delta: { content: "Hel" } }] },
          { model: "gpt-fake", choices: [{ delta: { content: "lo" } }] },
          { model: "gpt-fake", choices: [], usage: { prompt_tokens: 7, completion_tokens: 2 } },
        ];
        const stream = new ReadableStream({
          async start(controller) {
            for (const e of events) {
              controller.enqueue(enc.encode(`data: ${JSON.stringify(e)}\n\n`));
              await new Promise((r) => setTimeout(r, 5));
            }
            controller.enqueue(enc.encode("data: [DONE]\n\n"));
            controller.close();
          },
        });
        return new Response(stream, { headers: { "content-type": "text/event-stream" } });
      }
      return Response.json({
        model: "gpt-fake",
        choices: [{ message: { role: "assistant", content: "Hello" } }],
        usage: { prompt_tokens: 11, completion_tokens: 3 },
      });
    }
    return new Response(`hello from ${url.hostname}`, { headers: { "content-type": "text/plain" } });
  };
}

async function invokeCalls(headers: Record<string, string>, agentId: string, calls: unknown[]) {
  const res = await call("POST", `/v1/invoke/${agentId}`, {
    headers,
    body: userMessage(JSON.stringify(calls)),
  });
  expect(res.status).toBe(200);
  return JSON.parse((await json(res)).output.text) as any[];
}

async function setEgress(headers: Record<string, string>, agentId: string, body: unknown) {
  return call("PUT", `/v1/agents/${agentId}/egress`, { headers, body });
}

describe("egress door (loader mode)", () => {
  let seen: Seen[];
  beforeEach(() => {
    seen = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(fakeUpstream(seen));
    (env as any).OPENAI_API_KEY = PLATFORM_KEY;
    (env as any).MODEL_PROVIDERS = JSON.stringify({
      openai: { baseUrl: "https://api.openai.fake", keySecret: "OPENAI_API_KEY" },
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("answers GET with the default policy and validates PUT", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const got = await call("GET", `/v1/agents/${agent.id}/egress`, { headers });
    expect(await json(got)).toEqual({ egress: { agentId: agent.id, mode: "allowlist", allow: [], updatedAt: null } });
    await expectProblem(
      await setEgress(headers, agent.id, { mode: "allowlist", allow: ["https://x.com/"] }),
      400,
      "validation_failed",
    );
    await expectProblem(await setEgress(headers, agent.id, { mode: "sometimes" }), 400, "validation_failed");
    // `open` is not on the free tier.
    await expectProblem(await setEgress(headers, agent.id, { mode: "open" }), 403, "plan_limit_exceeded");
    const put = await setEgress(headers, agent.id, { mode: "allowlist", allow: ["api.allowed.test", "*.cdn.test"] });
    expect(put.status).toBe(200);
    const again = await json(await call("GET", `/v1/agents/${agent.id}/egress`, { headers }));
    expect(again.egress).toMatchObject({ mode: "allowlist", allow: ["api.allowed.test", "*.cdn.test"] });
    const other = await newUser();
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/egress`, { headers: other.headers }),
      404,
      "not_found",
    );
  });

  it("lets an allowlisted host through, answers egress_denied (403, naming the host) for others, and blocks private addresses and connect()", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: CALLER });
    expect(
      (await setEgress(headers, agent.id, { mode: "allowlist", allow: ["api.allowed.test", "127.0.0.1"] })).status,
    ).toBe(200);
    const results = await invokeCalls(headers, agent.id, [
      { url: "https://api.allowed.test/path?q=1" },
      { url: "https://other.test/" },
      { url: "http://169.254.169.254/latest/meta-data" },
      { url: "http://10.0.0.1/" },
      { connect: "api.allowed.test:443" },
    ]);
    expect(results[0]).toMatchObject({ status: 200, body: "hello from api.allowed.test" });
    expect(results[1].status).toBe(403);
    expect(results[1].contentType).toBe("application/problem+json");
    expect(JSON.parse(results[1].body)).toMatchObject({ code: "egress_denied", host: "other.test" });
    expect(JSON.parse(results[1].body).detail).toContain("other.test");
    expect(JSON.parse(results[2].body)).toMatchObject({ code: "egress_denied", host: "169.254.169.254" });
    expect(JSON.parse(results[3].body)).toMatchObject({ code: "egress_denied" });
    expect(results[4]).toEqual({ threw: expect.any(String) });
    // Only the allowed host was fetched.
    expect(seen.map((s) => s.url)).toEqual(["https://api.allowed.test/path?q=1"]);
  });

  it("a deny agent reaches nothing, platform models included", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: CALLER });
    expect((await setEgress(headers, agent.id, { mode: "deny" })).status).toBe(200);
    const results = await invokeCalls(headers, agent.id, [
      { url: "https://api.allowed.test/" },
      { url: "https://models.webhost.internal/openai/v1/chat/completions", method: "POST", body: "{}" },
    ]);
    expect(results.map((r) => JSON.parse(r.body).code)).toEqual(["egress_denied", "egress_denied"]);
    expect(seen).toEqual([]);
  });

  it("forwards platform model calls with the platform's key, meters JSON and streamed usage, and streams to the agent", async () => {
    const { headers, subject } = await newUser();
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: CALLER });
    const logged: string[] = [];
    for (const level of ["log", "warn", "error"] as const) {
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
        logged.push(args.map(String).join(" "));
      });
    }
    const results = await invokeCalls(headers, agent.id, [
      {
        url: "https://models.webhost.internal/openai/v1/chat/completions",
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-agent-own" },
        body: JSON.stringify({ model: "gpt-fake", messages: [{ role: "user", content: "hi" }] }),
      },
      {
        url: "https://models.webhost.internal/openai/v1/chat/completions",
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-fake", stream: true, messages: [{ role: "user", content: "hi" }] }),
        chunks: true,
      },
    ]);
    expect(results[0].status).toBe(200);
    expect(JSON.parse(results[0].body).choices[0].message.content).toBe("Hello");
    expect(results[1].status).toBe(200);
    // Passed through as it arrived: the agent read the events as separate chunks.
    expect(results[1].chunks.length).toBeGreaterThanOrEqual(3);
    expect(results[1].chunks.join("")).toContain("data: [DONE]");
    // The platform's key replaced whatever the agent sent; streamed requests ask for usage.
    expect(seen.map((s) => s.url)).toEqual([
      "https://api.openai.fake/v1/chat/completions",
      "https://api.openai.fake/v1/chat/completions",
    ]);
    expect(seen.map((s) => s.authorization)).toEqual([`Bearer ${PLATFORM_KEY}`, `Bearer ${PLATFORM_KEY}`]);
    expect(JSON.parse(seen[1]?.body ?? "{}").stream_options).toEqual({ include_usage: true });
    // Each outbound request is logged (host, status, bytes, duration), never a key or a body.
    expect(logged.filter((l) => l.includes('"event":"egress"'))).toHaveLength(2);
    expect(logged.filter((l) => l.includes(PLATFORM_KEY) || l.includes("sk-agent-own") || l.includes("Hello"))).toEqual(
      [],
    );

    const userId = await userIdOf(subject);
    const rows = await waitFor(
      async () => {
        const r = await env.DB.prepare(
          "SELECT kind, host, provider, model, status, input_tokens, output_tokens FROM metrics_events WHERE user_id = ? AND source = 'egress' ORDER BY ts, rowid",
        )
          .bind(userId)
          .all();
        return r.results.length === 2 ? r.results : undefined;
      },
      { timeoutMs: 10_000, what: "egress events" },
    );
    expect(rows).toEqual([
      {
        kind: "model",
        host: "models.webhost.internal",
        provider: "openai",
        model: "gpt-fake",
        status: "200",
        input_tokens: 11,
        output_tokens: 3,
      },
      {
        kind: "model",
        host: "models.webhost.internal",
        provider: "openai",
        model: "gpt-fake",
        status: "200",
        input_tokens: 7,
        output_tokens: 2,
      },
    ]);
    const usage = await waitFor(
      async () => {
        const u = await json(await call("GET", "/v1/usage/current", { headers }));
        return u.usage.modelInputTokens === 18 ? u : undefined;
      },
      { timeoutMs: 10_000, what: "model tokens in usage" },
    );
    expect(usage.usage).toMatchObject({ modelInputTokens: 18, modelOutputTokens: 5, egressRequests: 2 });
  });

  it("answers 429 token_budget_exceeded inside the agent once the period's model tokens are used up", async () => {
    const { headers, subject } = await newUser();
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: CALLER });
    const userId = await userIdOf(subject);
    const period = new Date().toISOString().slice(0, 7);
    await env.DB.prepare(
      "INSERT INTO billing_usage (id, user_id, period_key, agent_id, model_input_tokens, model_output_tokens, updated_at) VALUES (?, ?, ?, ?, 60000, 40000, 0)",
    )
      .bind(`use_${crypto.randomUUID().replaceAll("-", "")}`, userId, period, agent.id)
      .run();
    const results = await invokeCalls(headers, agent.id, [
      { url: "https://models.webhost.internal/openai/v1/chat/completions", method: "POST", body: "{}" },
    ]);
    expect(results[0].status).toBe(429);
    expect(JSON.parse(results[0].body)).toMatchObject({ code: "token_budget_exceeded", limit: 100_000 });
    expect(seen).toEqual([]);
  });
});
