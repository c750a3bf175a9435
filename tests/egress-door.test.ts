// The egress door's decisions and metering, called directly with a fake upstream: policy and
// private-address checks, Anthropic's streamed usage split across chunks, the per-invocation
// request cap, the per-request timeout, and a provider without a key.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { handleOutboundWorkerFetch } from "../src/entrypoints/egress";
import { type EgressDeps, handleEgress } from "../src/services/egress/door";
import { decideEgress, type EgressPolicy, isPrivateHost } from "../src/services/egress/policy";
import { DEFAULT_MODEL_PROVIDERS } from "../src/services/egress/providers";
import { meterBody, type StreamOutcome } from "../src/services/egress/usage-meter";
import type { MetricsEvent } from "../src/services/metering/event";
import { DEFAULT_TIER_LIMITS } from "../src/services/usage/tiers";
import { newUser } from "./helpers/auth";
import { seedAgent } from "./helpers/deployments";

const allow = (hosts: string[]): EgressPolicy => ({ mode: "allowlist", allow: hosts });

describe("egress policy", () => {
  it("refuses private, loopback, link-local and reserved destinations", () => {
    for (const host of [
      "127.0.0.1",
      "10.1.2.3",
      "172.16.0.1",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "localhost",
      "db.localhost",
      "printer.local",
      "[::1]",
      "[fe80::1]",
      "[fd00::1]",
      "[::ffff:127.0.0.1]",
    ]) {
      expect(isPrivateHost(host), host).toBe(true);
    }
    for (const host of ["api.openai.com", "8.8.8.8", "172.32.0.1", "[2606:4700::1111]"]) {
      expect(isPrivateHost(host), host).toBe(false);
    }
    // URL parsing normalises other IPv4 spellings to dotted form before the check.
    expect(decideEgress({ mode: "open", allow: [] }, new URL("http://2130706433/"), "production").allowed).toBe(false);
    expect(decideEgress({ mode: "open", allow: [] }, new URL("http://0x7f.1/"), "production").allowed).toBe(false);
  });

  it("matches exact hosts and `*.` subdomains, and allows a private host only in development with an exact entry", () => {
    const policy = allow(["api.example.com", "*.cdn.example", "127.0.0.1"]);
    const ok = (url: string, environment = "production") => decideEgress(policy, new URL(url), environment).allowed;
    expect(ok("https://api.example.com/x")).toBe(true);
    expect(ok("https://API.EXAMPLE.COM./x")).toBe(true);
    expect(ok("https://evil-api.example.com/")).toBe(false);
    expect(ok("https://a.b.cdn.example/")).toBe(true);
    expect(ok("https://cdn.example/")).toBe(false);
    expect(ok("http://127.0.0.1:9999/")).toBe(false);
    expect(ok("http://127.0.0.1:9999/", "development")).toBe(true);
    expect(ok("http://10.0.0.1/", "development")).toBe(false);
    expect(ok("https://models.webhost.internal/openai/v1/chat/completions")).toBe(true);
    expect(
      decideEgress({ mode: "deny", allow: [] }, new URL("https://models.webhost.internal/"), "development").allowed,
    ).toBe(false);
    expect(ok("ftp://api.example.com/")).toBe(false);
  });
});

describe("usage metering of provider answers", () => {
  it("reads Anthropic's streamed usage with events split across chunks, passing every chunk on", async () => {
    const text = [
      'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-fake","usage":{"input_tokens":21,"output_tokens":1}}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"Hi"}}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":9}}\n\n',
    ].join("");
    const enc = new TextEncoder();
    const pieces = [text.slice(0, 50), text.slice(50, 61), text.slice(61, 200), text.slice(200)];
    let ended: StreamOutcome | undefined;
    const out = meterBody(
      new ReadableStream({
        start(c) {
          for (const p of pieces) c.enqueue(enc.encode(p));
          c.close();
        },
      }),
      "sse",
      (o) => (ended = o),
    );
    const reader = out.getReader();
    let chunks = 0;
    let all = "";
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      chunks++;
      all += new TextDecoder().decode(r.value);
    }
    expect(chunks).toBe(4);
    expect(all).toBe(text);
    expect(ended).toEqual({
      inputTokens: 21,
      outputTokens: 9,
      model: "claude-fake",
      bytes: enc.encode(text).length,
      end: "ok",
    });
  });
});

async function doorDeps(overrides: Partial<EgressDeps> = {}) {
  const events: MetricsEvent[] = [];
  const upstream: Request[] = [];
  const deps: EgressDeps = {
    db: createDb(env.DB),
    tierLimits: DEFAULT_TIER_LIMITS,
    environment: "production",
    providers: DEFAULT_MODEL_PROVIDERS,
    secret: () => undefined,
    fetch: async (req) => {
      upstream.push(req);
      return new Response("ok");
    },
    timeoutMs: 5_000,
    record: (e) => events.push(e),
    waitUntil: () => {},
    ...overrides,
  };
  const owner = await newUser();
  const { userId, agentId } = await seedAgent(owner);
  await env.DB.prepare(
    "INSERT INTO agent_egress_policies (agent_id, user_id, mode, allow, updated_at) VALUES (?, ?, 'allowlist', '[\"api.example.com\"]', 0)",
  )
    .bind(agentId, userId)
    .run();
  return { deps, events, upstream, caller: { userId, agentId, deploymentId: "dep_door" } };
}

describe("egress door", () => {
  it("caps outbound requests per invocation at the tier's egressRequestsPerInvocation (429 egress_limit_exceeded)", async () => {
    const { deps, caller, upstream, events } = await doorDeps();
    const limit = DEFAULT_TIER_LIMITS.free.egressRequestsPerInvocation;
    const one = { ...caller, invocationId: "req_one" };
    for (let i = 0; i < limit; i++) {
      const res = await handleEgress(deps, one, new Request("https://api.example.com/"));
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("ok"); // the request is recorded when its answer has been read
    }
    const over = await handleEgress(deps, one, new Request("https://api.example.com/"));
    expect(over.status).toBe(429);
    expect(await over.json()).toMatchObject({ code: "egress_limit_exceeded" });
    // Another invocation has its own count.
    const other = await handleEgress(
      deps,
      { ...caller, invocationId: "req_two" },
      new Request("https://api.example.com/"),
    );
    expect(other.status).toBe(200);
    await other.text();
    expect(upstream).toHaveLength(limit + 1);
    expect(events).toHaveLength(limit + 2);
    expect(events.at(-1)).toMatchObject({ status: "200", bytesOut: 2, traceId: "req_two" });
    expect(events.at(-2)).toMatchObject({
      source: "egress",
      kind: "egress",
      host: "api.example.com",
      status: "429",
      errorCode: "egress_limit_exceeded",
      traceId: "req_one",
    });
  });

  it("answers 504 egress_timeout when the upstream does not answer in time", async () => {
    const { deps, caller } = await doorDeps({
      timeoutMs: 100,
      fetch: (req) =>
        new Promise((_, reject) => req.signal.addEventListener("abort", () => reject(new Error("aborted")))),
    });
    const res = await handleEgress(deps, caller, new Request("https://api.example.com/slow"));
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ code: "egress_timeout", host: "api.example.com" });
  });

  it("refuses a platform model call when the platform holds no key for the provider, and an unknown provider", async () => {
    const { deps, caller, upstream } = await doorDeps();
    const noKey = await handleEgress(
      deps,
      caller,
      new Request("https://models.webhost.internal/anthropic/v1/messages", { method: "POST", body: "{}" }),
    );
    expect(noKey.status).toBe(503);
    expect(await noKey.json()).toMatchObject({ code: "service_unavailable" });
    const unknown = await handleEgress(deps, caller, new Request("https://models.webhost.internal/nope/v1/x"));
    expect(unknown.status).toBe(404);
    expect(upstream).toEqual([]);
  });

  it("sends Anthropic calls with x-api-key (never the agent's own), and meters the JSON answer", async () => {
    const seen: Request[] = [];
    const { deps, caller, events } = await doorDeps({
      secret: (name) => (name === "ANTHROPIC_API_KEY" ? "sk-ant-platform" : undefined),
      fetch: async (req) => {
        seen.push(req);
        return Response.json({ model: "claude-fake", usage: { input_tokens: 5, output_tokens: 8 } });
      },
    });
    const res = await handleEgress(
      deps,
      caller,
      new Request("https://models.webhost.internal/anthropic/v1/messages", {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": "sk-agent", authorization: "Bearer agent" },
        body: JSON.stringify({ model: "claude-fake", messages: [] }),
      }),
    );
    expect(await res.json()).toMatchObject({ model: "claude-fake" });
    expect(seen[0]?.url).toBe("https://api.anthropic.com/v1/messages");
    expect(seen[0]?.headers.get("x-api-key")).toBe("sk-ant-platform");
    expect(seen[0]?.headers.get("authorization")).toBeNull();
    expect(seen[0]?.headers.get("anthropic-version")).toBe("2023-06-01");
    expect(events[0]).toMatchObject({
      kind: "model",
      provider: "anthropic",
      model: "claude-fake",
      inputTokens: 5,
      outputTokens: 8,
      status: "200",
    });
  });
});

describe("the outbound Worker's fetch (namespace mode)", () => {
  it("takes the caller from the webhost_egress parameter, and lets nothing out without one", async () => {
    const { caller } = await doorDeps();
    const ctx = { waitUntil: () => {}, passThroughOnException: () => {}, props: {} } as unknown as ExecutionContext;
    const withParam = { ...env, webhost_egress: { ...caller, invocationId: "req_ns" } } as typeof env;
    const denied = await handleOutboundWorkerFetch(new Request("https://not-allowed.example/"), withParam, ctx);
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ code: "egress_denied", host: "not-allowed.example" });
    const anonymous = await handleOutboundWorkerFetch(new Request("https://api.example.com/"), env, ctx);
    expect(anonymous.status).toBe(403);
    expect(await anonymous.json()).toMatchObject({
      code: "egress_denied",
      detail: expect.stringContaining("identity"),
    });
  });
});
