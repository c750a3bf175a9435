// Agent logs: what an agent prints reaches GET /v1/agents/:agentId/logs (loader mode: the loaded
// worker's tail is the gateway's LogTail entrypoint), with its secret values redacted, messages
// truncated, the follow stream sampling a burst instead of refusing it, and the usual tenant
// isolation and query validation.
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createFakeCloudflareApi } from "../scripts/lib/fake-cloudflare-api.ts";
import { handleTail } from "../src/entrypoints/log-tail";
import { formatLogMessage, redactorFor, truncateMessage } from "../src/services/logs/capture";
import { type AgentLogsApi, MAX_LOG_FOLLOWERS } from "../src/services/logs/types";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userIdOf, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { type SseEvent, sseEvents } from "./helpers/sse";
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
  const user = await newUser("logs");
  const agent = await createAgent(user.headers);
  if (secret) {
    const res = await call("PUT", `/v1/agents/${agent.id}/secrets/API_KEY`, {
      headers: user.headers,
      body: { value: secret },
    });
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

  it("redacts the agent's secret values and cuts long messages at 4 KB", async () => {
    const secret = `sk-live-${crypto.randomUUID()}`;
    const { headers, agent } = await printerAgent(secret);
    expect((await invoke(headers, agent.id, "secret")).status).toBe(200);
    expect((await invoke(headers, agent.id, "big")).status).toBe(200);
    const page = await waitFor(
      async () => {
        const p = await logsOf(headers, agent.id);
        return p.logs.some((l) => l.message.startsWith("my key is")) && p.logs.some((l) => l.message.startsWith("xxx"))
          ? p
          : undefined;
      },
      { timeoutMs: 5_000, what: "both lines" },
    );
    const keyLine = page.logs.find((l) => l.message.startsWith("my key is"))!;
    expect(keyLine.message).toBe("my key is [redacted] ok");
    expect(JSON.stringify(page)).not.toContain(secret);
    const big = page.logs.find((l) => l.message.startsWith("xxx"))!;
    expect(new TextEncoder().encode(big.message).byteLength).toBeLessThanOrEqual(4096);
    expect(big.message.endsWith("…[truncated]")).toBe(true);
  });

  it("records an uncaught exception and the invocation's failed outcome as error lines", async () => {
    const { headers, agent } = await printerAgent();
    const res = await invoke(headers, agent.id, "throw");
    expect(res.status).toBe(502);
    const page = await waitFor(
      async () => {
        const p = await logsOf(headers, agent.id, "?level=error");
        return p.logs.some((l) => l.message.includes("outcome")) ? p : undefined;
      },
      { timeoutMs: 5_000, what: "the exception's lines" },
    );
    expect(page.logs.every((l) => l.level === "error")).toBe(true);
    expect(page.logs.map((l) => l.message)).toEqual(
      expect.arrayContaining(["Uncaught Error: boom from the agent", "the invocation ended with outcome exception"]),
    );
  });

  it("names the run of a /stream invocation, and filters by q, level and deploymentId", async () => {
    const { headers, agent, deployment } = await printerAgent();
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("streamed") });
    expect(res.status).toBe(200);
    const runId = res.headers.get("x-run-id");
    await res.text();
    const page = await waitFor(
      async () => {
        const p = await logsOf(headers, agent.id, "?q=STREAMED");
        return p.logs.length > 0 ? p : undefined;
      },
      { timeoutMs: 5_000, what: "the run's line" },
    );
    expect(page.logs).toHaveLength(1);
    expect(page.logs[0]).toMatchObject({ message: "hello from the agent: streamed", runId });
    expect((await logsOf(headers, agent.id, "?level=warn")).logs.every((l) => l.level === "warn")).toBe(true);
    expect((await logsOf(headers, agent.id, `?deploymentId=${deployment.id}`)).logs.length).toBe(2);
    expect((await logsOf(headers, agent.id, "?deploymentId=dep_01jd0000000000000000000000")).logs).toEqual([]);
    expect((await logsOf(headers, agent.id, `?since=${new Date(Date.now() + 60_000).toISOString()}`)).logs).toEqual([]);
  });

  it("pages older lines with nextCursor", async () => {
    const { headers, agent } = await printerAgent();
    for (const t of ["one", "two", "three"]) expect((await invoke(headers, agent.id, t)).status).toBe(200);
    await waitFor(async () => ((await logsOf(headers, agent.id)).logs.length >= 6 ? true : undefined), {
      timeoutMs: 5_000,
      what: "six lines",
    });
    const first = await logsOf(headers, agent.id, "?limit=4");
    expect(first.logs).toHaveLength(4);
    expect(first.nextCursor).not.toBeNull();
    const second = await logsOf(headers, agent.id, `?limit=4&cursor=${first.nextCursor}`);
    expect(second.logs).toHaveLength(2);
    expect(second.nextCursor).toBeNull();
    const ids = [...first.logs, ...second.logs].map((l) => l.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(new Set(ids).size).toBe(6);
  });

  it("follows new lines live, resumes after Last-Event-ID, and samples a burst instead of refusing it", async () => {
    const { headers, agent } = await printerAgent();
    const res = await call("GET", `/v1/agents/${agent.id}/logs?follow=1`, { headers });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events: SseEvent[] = [];
    const reading = (async () => {
      for await (const e of sseEvents(res)) {
        events.push(e);
        // Leaving the loop cancels the body: the client goes away once the burst is accounted for.
        if (e.event === "sampled") break;
      }
    })().catch(() => {});
    const started = Date.now();
    expect((await invoke(headers, agent.id, "live")).status).toBe(200);
    // Each poll makes a request: the Workers clock (and so waitFor's deadline) moves only on I/O.
    await waitFor(
      async () => {
        await call("GET", "/healthz");
        return events.some((e) => e.data?.message === "hello from the agent: live") ? true : undefined;
      },
      {
        timeoutMs: 5_000,
        what: "the live line on the follow stream",
      },
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    const live = events.find((e) => e.event === "log")!;
    expect(Number(live.id)).toBe(live.data.id);

    // A burst of 200 lines (and 2 more) in one invocation, after the live invocation's own warning:
    // 203 lines; the free tier follows 50 lines a second.
    expect((await invoke(headers, agent.id, "burst")).status).toBe(200);
    const sampled = await waitFor(
      async () => {
        await call("GET", "/healthz");
        return events.find((e) => e.event === "sampled");
      },
      {
        timeoutMs: 5_000,
        what: "a sampled event",
      },
    );
    const burstSent = events.filter((e) => e.event === "log" && String(e.data.message).startsWith("burst line"));
    const afterLive = events.filter((e) => e.event === "log" && e.data.id > live.data.id);
    expect(afterLive.length).toBeLessThanOrEqual(50);
    expect(burstSent.length).toBeGreaterThan(0);
    expect(afterLive.length + sampled.data.dropped).toBe(203);
    await reading;

    // Everything was stored: a reconnect after the live line replays the whole burst.
    const again = await call("GET", `/v1/agents/${agent.id}/logs?follow=1`, {
      headers: { ...headers, "last-event-id": String(live.data.id) },
    });
    const replayed: SseEvent[] = [];
    const stopAt = setTimeout(() => again.body?.cancel().catch(() => {}), 3_000);
    try {
      for await (const e of sseEvents(again)) {
        replayed.push(e);
        if (replayed.length === 203) break;
      }
    } catch {}
    clearTimeout(stopAt);
    expect(replayed).toHaveLength(203);
    expect(replayed.filter((e) => !(e.event === "log" && e.data.id > live.data.id))).toEqual([]);
    expect(replayed.map((e) => e.data.id)).toEqual([...replayed.map((e) => e.data.id)].sort((a, b) => a - b));
  });

  it("keeps only the tier's last logLines lines", async () => {
    const stub = env.AGENT_LOGS.get(
      env.AGENT_LOGS.idFromName(`agt_cap_${crypto.randomUUID()}`),
    ) as unknown as AgentLogsApi;
    const limits = { maxLines: 5, retentionMs: 3_600_000 };
    const line = (i: number, ts = Date.now()) => ({
      ts,
      level: "log" as const,
      message: `line ${i}`,
      deploymentId: "dep_x",
      requestId: null,
      runId: null,
    });
    await stub.append(
      Array.from({ length: 12 }, (_, i) => line(i)),
      limits,
    );
    await stub.append([line(99, Date.now() - 2 * 3_600_000)], limits);
    const page = await stub.list({}, { limit: 100 }, limits);
    // The last 5 lines, and not the one older than the retention window.
    expect(page.logs.map((l) => l.message)).toEqual(["line 11", "line 10", "line 9", "line 8", "line 7"]);
  });
  it("empties an idle buffer at its alarm without ever reusing a line id", async () => {
    const stub = env.AGENT_LOGS.get(env.AGENT_LOGS.idFromName(`agt_idle_${crypto.randomUUID()}`));
    const api = stub as unknown as AgentLogsApi;
    const limits = { maxLines: 100, retentionMs: 3_600_000 };
    const line = {
      ts: Date.now(),
      level: "log" as const,
      message: "x",
      deploymentId: "dep_x",
      requestId: null,
      runId: null,
    };
    await api.append([line, line], limits);
    const before = await api.list({}, { limit: 10 }, limits);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await api.list({}, { limit: 10 }, limits)).logs).toEqual([]);
    await api.append([{ ...line, ts: Date.now() }], limits);
    const after = await api.list({}, { limit: 10 }, limits);
    expect(after.logs).toHaveLength(1);
    expect(after.logs[0]!.id).toBeGreaterThan(before.logs[0]!.id);
  });
});

describe("agent logs: access and validation", () => {
  it("serves at most MAX_LOG_FOLLOWERS live followers per agent (429 rate_limited), and a closed one frees its place", async () => {
    const { headers, agent } = await printerAgent();
    const open: Response[] = [];
    for (let i = 0; i < MAX_LOG_FOLLOWERS; i++) {
      const res = await call("GET", `/v1/agents/${agent.id}/logs?follow=1`, { headers });
      expect(res.status).toBe(200);
      open.push(res);
    }
    const refused = await call("GET", `/v1/agents/${agent.id}/logs?follow=1`, { headers });
    await expectProblem(refused, 429, "rate_limited");
    expect(refused.headers.get("retry-after")).toBe("5");
    // The list is not a follower: still served.
    expect((await call("GET", `/v1/agents/${agent.id}/logs`, { headers })).status).toBe(200);
    await open.pop()?.body?.cancel();
    // The buffer notices a gone follower when it next writes to it (a line, or the heartbeat).
    expect((await invoke(headers, agent.id, "after one left")).status).toBe(200);
    const freed = await waitFor(
      async () => {
        const res = await call("GET", `/v1/agents/${agent.id}/logs?follow=1`, { headers });
        if (res.status === 200) return res;
        await res.body?.cancel();
        return undefined;
      },
      { timeoutMs: 20_000, what: "a follower's place freed" },
    );
    open.push(freed);
    for (const res of open) await res.body?.cancel();
  });

  it("answers 404 to a stranger, for the list and the follow stream", async () => {
    const { agent } = await printerAgent();
    const stranger = await newUser("stranger");
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/logs`, { headers: stranger.headers }),
      404,
      "not_found",
    );
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/logs?follow=1`, { headers: stranger.headers }),
      404,
      "not_found",
    );
  });

  it.each([
    ["limit=0", "query.limit"],
    ["limit=1001", "query.limit"],
    ["level=fatal", "query.level"],
    ["since=yesterday", "query.since"],
    ["deploymentId=agt_01jd0000000000000000000000", "query.deploymentId"],
    [`q=${"a".repeat(201)}`, "query.q"],
    ["follow=yes", "query.follow"],
    ["follow=1&after=-1", "query.after"],
  ])("answers 400 to ?%s", async (query, location) => {
    const { headers, agent } = await printerAgent();
    const body = await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/logs?${query}`, { headers }),
      400,
      "validation_failed",
    );
    expect(body.errors.map((e: { location: string }) => e.location)).toContain(location);
  });

  it("answers 400 to a cursor it did not issue and to a bad Last-Event-ID", async () => {
    const { headers, agent } = await printerAgent();
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/logs?cursor=bm9wZQ`, { headers }),
      400,
      "invalid_cursor",
    );
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/logs?follow=1`, { headers: { ...headers, "last-event-id": "x" } }),
      400,
      "validation_failed",
    );
  });
});

describe("agent logs: namespace mode", () => {
  function trace(tags: string[], message: string) {
    return {
      scriptName: "webhost-dep-x",
      scriptTags: tags,
      dispatchNamespace: "webhost-agents",
      eventTimestamp: Date.now(),
      event: {
        request: {
          url: "https://agent.webhost.internal/invoke",
          method: "POST",
          headers: { "x-request-id": "req_ns" },
        },
      },
      logs: [{ timestamp: Date.now(), level: "info", message: [message] }],
      exceptions: [],
      diagnosticsChannelEvents: [],
      outcome: "ok",
      executionModel: "stateless",
      truncated: false,
      cpuTime: 1,
      wallTime: 2,
    } as unknown as TraceItem;
  }
  const ctx = { waitUntil: () => {}, passThroughOnException: () => {}, props: {} } as unknown as ExecutionContext;

  it("stores a user script's trace under the agent its tags name, and nothing for tags that do not match", async () => {
    const { headers, subject, agent, deployment } = await printerAgent();
    const userId = await userIdOf(subject);
    const tags = [`user-${userId}`, `agent-${agent.id}`, `deployment-${deployment.id}`];
    const other = await printerAgent();
    // A trace claiming this agent but naming another user's deployment is dropped.
    const forged = [`user-${userId}`, `agent-${agent.id}`, `deployment-${other.deployment.id}`];
    await handleTail([trace(tags, "from the namespace"), trace(forged, "forged line")], env, ctx);
    const page = await logsOf(headers, agent.id);
    expect(page.logs).toHaveLength(1);
    expect(page.logs[0]).toMatchObject({
      message: "from the namespace",
      level: "info",
      deploymentId: deployment.id,
      requestId: "req_ns",
    });
    expect((await logsOf(other.headers, other.agent.id)).logs).toEqual([]);
  });

  it("the fake Cloudflare API refuses malformed tail_consumers as the upload API does", async () => {
    const api = createFakeCloudflareApi({
      accountId: "0123456789abcdef0123456789abcdef",
      apiToken: "t",
      namespace: "ns",
    });
    const upload = (tailConsumers: unknown) => {
      const form = new FormData();
      form.set(
        "metadata",
        JSON.stringify({
          main_module: "index.mjs",
          compatibility_date: "2026-08-01",
          bindings: [],
          tail_consumers: tailConsumers,
        }),
      );
      form.set(
        "index.mjs",
        new Blob(["export default { fetch() { return new Response('x'); } };"], {
          type: "application/javascript+module",
        }),
        "index.mjs",
      );
      return api.fetch(
        new Request(
          "https://api.cloudflare.test/client/v4/accounts/0123456789abcdef0123456789abcdef/workers/dispatch/namespaces/ns/scripts/webhost-dep-a",
          { method: "PUT", headers: { authorization: "Bearer t" }, body: form },
        ),
      );
    };
    expect((await upload([{ service: "webhost-gateway" }])).status).toBe(200);
    for (const bad of [
      "webhost-gateway",
      [{}],
      [{ service: "Not A Name" }],
      [{ service: "gw", entrypoint: "X" }],
      [{ service: "webhost-dep-a" }],
    ]) {
      const res = await upload(bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(((await res.json()) as { errors: Array<{ code: number }> }).errors[0]?.code).toBe(10021);
    }
  });
});

describe("agent logs: capture edges", () => {
  it("redacts a secret also where JSON escaped it, the longest secret first, and leaves 1–3 character values alone", () => {
    const redact = redactorFor(['pa"ss\\word', "abc", "sk-123", "sk-123456"]);
    const printed = formatLogMessage(["config", { key: 'pa"ss\\word', other: "sk-123456" }, "abc"]);
    expect(printed).toContain('pa\\"ss');
    expect(redact(printed)).toBe('config {"key":"[redacted]","other":"[redacted]"} abc');
  });

  it("cuts at 4 KB without splitting a character", () => {
    const cut = truncateMessage("é".repeat(3000));
    expect(new TextEncoder().encode(cut).byteLength).toBeLessThanOrEqual(4096);
    expect(cut).not.toContain("\uFFFD");
    expect(cut.endsWith("…[truncated]")).toBe(true);
    expect(truncateMessage("short")).toBe("short");
  });
});
