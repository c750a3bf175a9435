// The egress door over HTTP against `wrangler dev` (loader mode), with the fake OpenAI-compatible
// provider of tests/e2e/fake-provider.ts on 127.0.0.1 (reachable because ENVIRONMENT=development
// and the agent's allowlist names 127.0.0.1; the gateway's MODEL_PROVIDERS points openai at it).
import { describe, expect, it } from "vitest";
import { FAKE_PROVIDER_KEY } from "./fake-provider.ts";
import { api, e2e, expectJson, expectProblem, newUser, type User, waitFor } from "./harness.ts";

/** Makes the outbound calls its message lists; answers what each got (chunk by chunk when asked). */
const CALLER = `export default {
  async fetch(req) {
    if (req.method === "GET") return new Response("ok");
    const { messages } = await req.json();
    const results = [];
    for (const c of JSON.parse(messages[0].content)) {
      const res = await fetch(c.url, { method: c.method ?? "GET", headers: c.headers, body: c.body });
      if (c.chunks) {
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        const chunks = [];
        for (;;) { const r = await reader.read(); if (r.done) break; chunks.push(dec.decode(r.value)); }
        results.push({ status: res.status, chunks });
      } else {
        results.push({ status: res.status, body: await res.text() });
      }
    }
    return Response.json({ output: { text: JSON.stringify(results) } });
  },
};`;

const CHAT = "https://models.webhost.internal/openai/v1/chat/completions";
const chat = (stream: boolean) => ({
  url: CHAT,
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ model: "gpt-e2e", stream, messages: [{ role: "user", content: "hi" }] }),
  chunks: stream,
});

async function agentWithCaller(user: User, egress: unknown): Promise<string> {
  const { agent } = await expectJson(
    await api("POST", "/v1/agents", { user, body: { name: `egress-${Date.now()}` } }),
    201,
  );
  await expectJson(await api("PUT", `/v1/agents/${agent.id}/egress`, { user, body: egress }), 200);
  const { deployment } = await expectJson(
    await api("POST", `/v1/agents/${agent.id}/deploy`, { user, body: { moduleCode: CALLER } }),
    202,
  );
  await waitFor(`deployment ${deployment.id} active`, async () => {
    const res = await api("GET", `/v1/agents/${agent.id}/deployments/${deployment.id}`, { user });
    const d = (await expectJson(res, 200)).deployment;
    if (d.status === "failed") throw new Error(d.errorMessage);
    return d.status === "active" ? d : undefined;
  });
  return agent.id;
}

async function run(user: User, agentId: string, calls: unknown[]): Promise<any[]> {
  const res = await api("POST", `/v1/invoke/${agentId}`, {
    user,
    body: { messages: [{ role: "user", content: JSON.stringify(calls) }] },
  });
  return JSON.parse((await expectJson(res, 200)).output.text);
}

async function modelTokens(user: User): Promise<number> {
  const usage = (await expectJson(await api("GET", "/v1/usage/current", { user }), 200)).usage;
  return usage.modelInputTokens + usage.modelOutputTokens;
}

describe("egress over HTTP (wrangler dev, loader mode)", () => {
  it("an allowlisted host is reached, another gets egress_denied, a deny agent reaches nothing", async () => {
    const user = await newUser("egress");
    const allowed = await agentWithCaller(user, { mode: "allowlist", allow: ["127.0.0.1"] });
    const [reached, denied] = await run(user, allowed, [
      { url: `${e2e.providerBaseUrl}/hello` },
      { url: "https://example.com/" },
    ]);
    expect(reached).toEqual({ status: 200, body: "hello from the fake" });
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ code: "egress_denied", host: "example.com" });

    const denyAll = await agentWithCaller(user, { mode: "deny" });
    const results = await run(user, denyAll, [{ url: `${e2e.providerBaseUrl}/hello` }, chat(false)]);
    expect(results.map((r) => [r.status, JSON.parse(r.body).code])).toEqual([
      [403, "egress_denied"],
      [403, "egress_denied"],
    ]);
    // A bad policy is the caller's mistake.
    await expectProblem(
      await api("PUT", `/v1/agents/${allowed}/egress`, { user, body: { mode: "allowlist", allow: ["http://x/"] } }),
      400,
      "validation_failed",
    );
  });

  it("calls the platform model without a key (JSON and streamed), meters the tokens, then answers 429 over budget", async () => {
    const user = await newUser("models");
    const agentId = await agentWithCaller(user, { mode: "allowlist", allow: [] });

    const [json] = await run(user, agentId, [chat(false)]);
    expect(json.status).toBe(200);
    expect(JSON.parse(json.body).choices[0].message.content).toBe("Hello");
    await waitFor("JSON usage metered", async () => ((await modelTokens(user)) === 14 ? true : undefined));

    const [streamed] = await run(user, agentId, [chat(true)]);
    expect(streamed.status).toBe(200);
    // The provider wrote its events 150 ms apart; the agent read them as separate chunks.
    expect(streamed.chunks.length).toBeGreaterThanOrEqual(3);
    expect(streamed.chunks.join("")).toContain('"usage":{"prompt_tokens":7,"completion_tokens":2}');
    await waitFor("streamed usage metered", async () => ((await modelTokens(user)) === 23 ? true : undefined));

    // The platform's key arrived; the streamed request was asked for its usage.
    const seen = (await (await fetch(`${e2e.providerBaseUrl}/__seen`)).json()) as Array<Record<string, unknown>>;
    const chats = seen.filter((s) => s.path === "/v1/chat/completions");
    expect(chats.slice(-2)).toEqual([
      { path: "/v1/chat/completions", authorization: `Bearer ${FAKE_PROVIDER_KEY}`, includeUsage: null },
      { path: "/v1/chat/completions", authorization: `Bearer ${FAKE_PROVIDER_KEY}`, includeUsage: true },
    ]);

    // 23 tokens used of the free tier's 20 (this run's TIER_LIMITS): the next call is refused inside the agent.
    const [over] = await run(user, agentId, [chat(false)]);
    expect(over.status).toBe(429);
    expect(JSON.parse(over.body)).toMatchObject({ code: "token_budget_exceeded", limit: 20 });
  });
});
