// Agent logs end to end: real HTTP against `wrangler dev` in loader mode. An agent's console.log
// reaches GET /v1/agents/:agentId/logs and an open follow stream within 5 s of the invocation, a
// secret value it prints is redacted, a reconnect with Last-Event-ID resumes after the last line,
// and a stranger gets 404.
import { beforeAll, describe, expect, it } from "vitest";
import { readSse, type SseEvent } from "../../scripts/lib/sse.ts";
import { api, expectJson, expectProblem, newUser, type User, waitFor } from "./harness";

const LOGS_AGENT = `export default {
  async fetch(req, env) {
    const text = (await req.json()).messages.at(-1).content;
    console.log("agent says: " + text);
    if (text === "leak") console.warn("the token is " + env.TOKEN);
    return Response.json({ output: { text: "ok" } });
  },
};`;

const SECRET = `tok-${crypto.randomUUID()}`;
const say = (content: string) => ({ messages: [{ role: "user", content }] });
type Line = { id: number; ts: string; level: string; message: string; deploymentId: string; requestId: string | null };

let owner: User;
let agentId: string;
let deploymentId: string;

beforeAll(async () => {
  owner = await newUser("logs-owner");
  ({
    agent: { id: agentId },
  } = await expectJson<{ agent: { id: string } }>(
    await api("POST", "/v1/agents", { user: owner, body: { name: `logs-${crypto.randomUUID().slice(0, 8)}` } }),
    201,
  ));
  await expectJson(
    await api("PUT", `/v1/agents/${agentId}/secrets/TOKEN`, { user: owner, body: { value: SECRET } }),
    201,
  );
  ({
    deployment: { id: deploymentId },
  } = await expectJson<{ deployment: { id: string } }>(
    await api("POST", `/v1/agents/${agentId}/deploy`, { user: owner, body: { moduleCode: LOGS_AGENT } }),
    202,
  ));
  await waitFor("the logs agent to become active", async () => {
    const res = await api("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`, { user: owner });
    const { deployment } = await expectJson<{ deployment: { status: string; errorMessage: string | null } }>(res, 200);
    if (deployment.status === "failed") throw new Error(`deploy failed: ${deployment.errorMessage}`);
    return deployment.status === "active" ? true : undefined;
  });
});

async function invoke(text: string): Promise<string> {
  const res = await api("POST", `/v1/invoke/${agentId}`, { user: owner, body: say(text) });
  await expectJson(res, 200);
  return res.headers.get("x-request-id") ?? "";
}

describe("agent logs over HTTP (loader mode)", () => {
  it("a console.log reaches GET …/logs within 5 s, with its deployment and request id", async () => {
    const started = Date.now();
    const requestId = await invoke("hello over http");
    const line = await waitFor(
      "the line in GET …/logs",
      async () => {
        const { logs } = await expectJson<{ logs: Line[] }>(
          await api("GET", `/v1/agents/${agentId}/logs?q=hello%20over`, { user: owner }),
          200,
        );
        return logs[0];
      },
      { timeoutMs: 5_000, intervalMs: 100 },
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(line).toMatchObject({ message: "agent says: hello over http", level: "log", deploymentId, requestId });
  });

  it("a console.log reaches an open follow stream within 5 s; a reconnect with Last-Event-ID resumes after it", async () => {
    const abort = new AbortController();
    const res = await api("GET", `/v1/agents/${agentId}/logs?follow=1`, { user: owner, signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const stream = readSse(res.body!);
    const started = Date.now();
    await invoke("followed");
    let first: SseEvent | undefined;
    const timer = setTimeout(() => abort.abort(), 5_000);
    for await (const e of stream) {
      if (e.event === "log" && JSON.parse(e.data).message === "agent says: followed") {
        first = e;
        break;
      }
    }
    clearTimeout(timer);
    expect(first, "the line on the follow stream").toBeDefined();
    expect(Date.now() - started).toBeLessThan(5_000);
    abort.abort();

    // Printed while nobody follows, then replayed after the id the client last saw.
    await invoke("while away");
    await waitFor("the second line to be stored", async () => {
      const { logs } = await expectJson<{ logs: Line[] }>(
        await api("GET", `/v1/agents/${agentId}/logs?q=while%20away`, { user: owner }),
        200,
      );
      return logs[0];
    });
    const again = new AbortController();
    const resumed = await api("GET", `/v1/agents/${agentId}/logs?follow=1`, {
      user: owner,
      headers: { "last-event-id": String(first!.id) },
      signal: again.signal,
    });
    const timer2 = setTimeout(() => again.abort(), 5_000);
    let next: SseEvent | undefined;
    try {
      for await (const e of readSse(resumed.body!)) {
        if (e.event === "log") {
          next = e;
          break;
        }
      }
    } finally {
      clearTimeout(timer2);
      again.abort();
    }
    expect(Number(next?.id)).toBeGreaterThan(Number(first!.id));
    expect(JSON.parse(next!.data).message).toBe("agent says: while away");
  });

  it("redacts the agent's secret value from what it printed", async () => {
    await invoke("leak");
    const line = await waitFor("the warning", async () => {
      const { logs } = await expectJson<{ logs: Line[] }>(
        await api("GET", `/v1/agents/${agentId}/logs?level=warn`, { user: owner }),
        200,
      );
      return logs[0];
    });
    expect(line.message).toBe("the token is [redacted]");
    const all = await api("GET", `/v1/agents/${agentId}/logs?limit=1000`, { user: owner });
    expect(await all.text()).not.toContain(SECRET);
  });

  it("answers a stranger 404 and a bad query 400", async () => {
    const stranger = await newUser("logs-stranger");
    await expectProblem(await api("GET", `/v1/agents/${agentId}/logs`, { user: stranger }), 404, "not_found");
    await expectProblem(await api("GET", `/v1/agents/${agentId}/logs?follow=1`, { user: stranger }), 404, "not_found");
    await expectProblem(
      await api("GET", `/v1/agents/${agentId}/logs?level=loud`, { user: owner }),
      400,
      "validation_failed",
    );
  });
});
