// Agent logs: what an agent prints reaches GET /v1/agents/:agentId/logs (loader mode: the loaded
// worker's tail is the gateway's LogTail entrypoint), with its secret values redacted, messages
// truncated, the follow stream sampling a burst instead of refusing it, and the usual tenant
// isolation and query validation.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { waitFor } from "./helpers/wait";

const PRINTER = `export default {
  async fetch(req, env) {
    const body = await req.json();
    const text = body.messages[0].content;
    console.log("hello from the agent:", text);
    console.warn("a warning", { n: 1 });
    if (text === "secret") console.log("my key is " + env.API_KEY + " ok");
    if (text === "big") console.log("x".repeat(10000));
    if (text === "burst") for (let i = 0; i < 200; i++) console.log("burst line " + i);
    if (text === "throw") throw new Error("boom from the agent");
    return Response.json({ output: { text: "ok" } });
  },
};`;

async function printerAgent(secret?: string) {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  if (secret) {
    const res = await call("PUT", `/v1/agents/${agent.id}/secrets/API_KEY`, { headers: user.headers, body: { value: secret } });
    expect(res.status).toBe(201);
  }
  const deployment = await deployAndActivate(user.headers, agent.id, { moduleCode: PRINTER });
  return { ...user, agent, deployment };
}

async function invoke(headers: Record<string, string>, agentId: string, text: string) {
  return call("POST", `/v1/invoke/${agentId}`, { headers, body: userMessage(text) });
}

async function logsOf(headers: Record<string, string>, agentId: string, query = "") {
  const res = await call("GET", `/v1/agents/${agentId}/logs${query}`, { headers });
  expect(res.status).toBe(200);
  return (await json(res)) as { logs: Array<Record<string, any>>; nextCursor: string | null };
}

describe("agent logs (loader mode)", () => {
  it("stores what the agent printed, with level, deployment and request id", async () => {
    const { headers, agent, deployment } = await printerAgent();
    const res = await invoke(headers, agent.id, "hi there");
    expect(res.status).toBe(200);
    const requestId = res.headers.get("x-request-id");
    const page = await waitFor(
      async () => {
        const p = await logsOf(headers, agent.id);
        return p.logs.some((l) => l.message === "hello from the agent: hi there") ? p : undefined;
      },
      { timeoutMs: 5_000, what: "the agent's console.log in its logs" },
    );
    const hello = page.logs.find((l) => l.message === "hello from the agent: hi there")!;
    expect(hello).toMatchObject({ level: "log", deploymentId: deployment.id, requestId });
    expect(new Date(hello.ts).toISOString()).toBe(hello.ts);
    const warn = page.logs.find((l) => l.level === "warn")!;
    expect(warn.message).toBe('a warning {"n":1}');
    // Newest first.
    expect(page.logs[0]!.id).toBeGreaterThan(page.logs[page.logs.length - 1]!.id);
  });
});
