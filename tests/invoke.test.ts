import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { telemetrySecretAad } from "../src/crypto/aad";
import { toBase64Url } from "../src/crypto/encoding";
import { decryptSecret } from "../src/crypto/envelope";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import { recordInvocation } from "../src/services/metering/record-invocation";
import * as modules from "./fixtures/modules";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { collectSse, sseEvents } from "./helpers/sse";
import { waitFor } from "./helpers/wait";

async function agentRunning(moduleCode?: string) {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  const deployment = await deployAndActivate(user.headers, agent.id, moduleCode ? { moduleCode } : {});
  return { ...user, agent, deployment };
}

async function gatewayEvent(requestId: string) {
  return waitFor(
    async () =>
      (await env.DB.prepare("SELECT * FROM metrics_events WHERE source = 'gateway' AND dedupe_key = ?")
        .bind(requestId)
        .first<Record<string, unknown>>()) ?? undefined,
    { what: `the gateway measurement of ${requestId}` },
  );
}

/** The stream's events; fails the test if the stream is still open after `ms`. */
async function collectWithin(res: Response, ms: number) {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const stillOpen = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the stream was still open after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([collectSse(res), stillOpen]);
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

/** Asks the CANCEL_OBSERVER agent whether the stream opened with `key` was cancelled. */
async function expectAgentStreamCancelled(headers: Record<string, string>, agentId: string, key: string) {
  await waitFor(
    async () => {
      const res = await call("POST", `/v1/invoke/${agentId}`, { headers, body: userMessage(`cancelled? ${key}`) });
      return (await json(res)).output.text === "true" ? true : undefined;
    },
    { timeoutMs: 3_000, intervalMs: 100, what: "the agent's stream to be cancelled" },
  );
}

describe("invoke: routing and request validation", () => {
  it("answers 409 no_active_deployment before any deployment is active", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("hi") }),
      409,
      "no_active_deployment",
    );
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("hi") }),
      409,
      "no_active_deployment",
    );
  });

  it("answers 409 agent_disabled for a disabled agent, and 404 for a deleted or unknown one", async () => {
    const { headers, agent } = await agentRunning();
    expect((await call("POST", `/v1/agents/${agent.id}/disable`, { headers })).status).toBe(200);
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("hi") }),
      409,
      "agent_disabled",
    );
    expect((await call("DELETE", `/v1/agents/${agent.id}`, { headers })).status).toBe(204);
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("hi") }),
      404,
      "not_found",
    );
    await expectProblem(
      await call("POST", "/v1/invoke/agt_00000000000000000000000000", { headers, body: userMessage("hi") }),
      404,
      "not_found",
    );
  });

  it("validates the invoke/v1 request and lists each bad field", async () => {
    const { headers, agent } = await agentRunning();
    const bad = [
      [{ messages: [] }, ["body.messages"]],
      [{ messages: [{ role: "robot", content: "x" }] }, ["body.messages.0.role"]],
      [{ messages: [{ role: "user", content: 5 }], sessionId: "" }, ["body.messages.0.content", "body.sessionId"]],
      [{ messages: [{ role: "user", content: "x" }], extra: true }, ["body.extra"]],
    ] as const;
    for (const [body, locations] of bad) {
      const problem = await expectProblem(
        await call("POST", `/v1/invoke/${agent.id}`, { headers, body }),
        400,
        "validation_failed",
      );
      expect(problem.errors.map((e: { location: string }) => e.location).sort()).toEqual([...locations].sort());
    }
  });
});

describe("invoke: what the user script sees", () => {
  it("gets the platform env (identity, its own telemetry secret, TELEMETRY), outbound fetch only through the egress door, and never the caller's token", async () => {
    const { headers, agent, deployment, subject } = await agentRunning(modules.ENV_REPORTER);
    const body = { ...userMessage("what do you see?"), sessionId: "s-1", metadata: { a: 1 } };
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body });
    expect(res.status).toBe(200);
    const seen = JSON.parse((await json(res)).output.text);

    const user = await env.DB.prepare("SELECT id FROM users WHERE auth_subject = ?")
      .bind(subject)
      .first<{ id: string }>();
    const row = await env.DB.prepare("SELECT telemetry_secret_ciphertext AS c FROM deployments WHERE id = ?")
      .bind(deployment.id)
      .first<{ c: string }>();
    const { keyring } = await getConfig(env);
    const key = await decryptSecret(keyring, row!.c, telemetrySecretAad(deployment.id));
    expect(key.byteLength).toBe(32);

    expect(seen).toMatchObject({
      envKeys: ["AGENT_ID", "DEPLOYMENT_ID", "RUNTIME_PROVIDER", "TELEMETRY", "TELEMETRY_SECRET", "USER_ID"],
      USER_ID: user!.id,
      AGENT_ID: agent.id,
      DEPLOYMENT_ID: deployment.id,
      RUNTIME_PROVIDER: "cloudflare",
      TELEMETRY_SECRET: toBase64Url(key),
      // The egress door answers: a new agent's default policy lets only platform models out.
      outbound: "403 egress_denied",
      method: "POST",
      path: "/invoke",
      authorization: null,
      accept: "application/json",
      requestId: res.headers.get("x-request-id"),
      body,
    });
    // The binding reaches the gateway's TelemetrySink over RPC (from a loader isolate built while
    // the deploy job ran) and its answer to a correctly signed event comes back.
    expect(seen.telemetry).toEqual({ accepted: 1, queued: true });
  });

  it("forwards to the deployment's invokePath", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: modules.ENV_REPORTER, invokePath: "/agents/v2/chat" });
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("path?") });
    const events = await collectSse(res);
    expect(events.map((e) => e.event)).toEqual(["delta", "done"]);
    expect(JSON.parse(events[0]!.data.text)).toMatchObject({ path: "/agents/v2/chat", accept: "text/event-stream" });
  });
});

describe("invoke: user script failures", () => {
  it("turns a throwing script into 502 upstream_exception with the deployment id", async () => {
    const { headers, agent, deployment } = await agentRunning(modules.THROWS_ON_INVOKE);
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("x") });
    expect(res.headers.get("x-deployment-id")).toBe(deployment.id);
    const problem = await expectProblem(res, 502, "upstream_exception");
    expect(problem.detail).toContain("handler exploded");
    const streamed = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("x") });
    await expectProblem(streamed, 502, "upstream_exception");
  });

  it("turns a non-invoke/v1 answer into 502 upstream_invalid_response", async () => {
    for (const code of [modules.ANSWERS_PLAIN_TEXT, modules.ANSWERS_WRONG_SHAPE]) {
      const { headers, agent } = await agentRunning(code);
      await expectProblem(
        await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("x") }),
        502,
        "upstream_invalid_response",
      );
      await expectProblem(
        await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("x") }),
        502,
        "upstream_invalid_response",
      );
    }
  });

  it("turns an agent's 5xx into 502 upstream_error carrying the agent's status and body", async () => {
    const { headers, agent } = await agentRunning(modules.ANSWERS_500);
    const problem = await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("x") }),
      502,
      "upstream_error",
    );
    expect(problem).toMatchObject({ agentStatus: 500, agentBody: '{"error":"agent is sad"}' });
  });

  it("answers 504 upstream_timeout when the script does not answer within INVOKE_TIMEOUT_MS", async () => {
    const { headers, agent } = await agentRunning(modules.slowAnswer(5_000));
    const res = await callWithEnv({ INVOKE_TIMEOUT_MS: "300" }, "POST", `/v1/invoke/${agent.id}`, {
      headers,
      body: userMessage("x"),
    });
    const problem = await expectProblem(res, 504, "upstream_timeout");
    expect(problem.detail).toContain("300 ms");
  });

  it("never retries the user's POST, even when the script fails", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTS_THEN_THROWS);
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("fail") }),
      502,
      "upstream_exception",
    );
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("count") });
    expect((await json(res)).output.text).toBe("2");
  });
});

describe("invoke: streaming", () => {
  it("relays events as they are produced: the first ones arrive while the script is still producing", async () => {
    const { headers, agent } = await agentRunning(modules.ENDLESS_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("go") });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    // The script never finishes: a gateway that buffered the answer could not hand us any event.
    const seen: string[] = [];
    for await (const e of sseEvents(res)) {
      seen.push(`${e.event}:${e.data.text}`);
      if (seen.length === 3) break;
    }
    await res.body!.cancel();
    expect(seen).toEqual(["delta:tick 0", "delta:tick 1", "delta:tick 2"]);
    // The client left, the run did not: it is measured once, when it ends (here: cancelled).
    const runId = res.headers.get("x-run-id")!;
    expect((await json(await call("GET", `/v1/runs/${runId}`, { headers }))).run.status).toBe("running");
    expect((await call("POST", `/v1/runs/${runId}/cancel`, { headers })).status).toBe(200);
    const requestId = res.headers.get("x-request-id")!;
    expect(await gatewayEvent(requestId)).toMatchObject({
      streaming: 1,
      status: "error",
      error_code: "cancelled",
    });
  });

  it("streams the template's answer word by word and records one gateway measurement", async () => {
    const { headers, agent, deployment } = await agentRunning();
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, {
      headers,
      body: userMessage("alpha beta gamma delta"),
    });
    const events = await collectSse(res);
    expect(events.map((e) => e.event)).toEqual(["delta", "delta", "delta", "delta", "done"]);
    expect(events.slice(0, 4).map((e) => e.data.text)).toEqual(["alpha ", "beta ", "gamma ", "delta"]);
    expect(events[4]!.data.output.text).toBe("alpha beta gamma delta");
    const row = await gatewayEvent(res.headers.get("x-request-id")!);
    expect(row).toMatchObject({
      deployment_id: deployment.id,
      agent_id: agent.id,
      source: "gateway",
      kind: "invoke",
      status: "ok",
      streaming: 1,
      error_code: null,
    });
    expect(row.bytes_out).toBeGreaterThan(0);
    expect(row.bytes_in).toBe(JSON.stringify(userMessage("alpha beta gamma delta")).length);
  });

  it("adapts a JSON answer on /stream to one delta and done", async () => {
    const { headers, agent } = await agentRunning(modules.fixedAnswer("adapted answer"));
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("x") });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await collectSse(res);
    expect(events).toEqual([
      expect.objectContaining({ event: "delta", data: { text: "adapted answer" } }),
      expect.objectContaining({ event: "done", data: { output: { text: "adapted answer" } } }),
    ]);
  });

  it("ends a stream that fails midway with an error event after the events already sent", async () => {
    const { headers, agent } = await agentRunning(modules.STREAM_FAILS_MIDWAY);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("x") });
    expect(res.status).toBe(200);
    const events = await collectSse(res);
    expect(events.map((e) => e.event)).toEqual(["delta", "error"]);
    expect(events[1]!.data).toMatchObject({ code: "upstream_exception" });
    expect(events[1]!.data.message).toContain("stream blew up");
    expect(await gatewayEvent(res.headers.get("x-request-id")!)).toMatchObject({
      status: "error",
      error_code: "upstream_exception",
    });
  });

  it("ends a stream that stops without done with an error event", async () => {
    const { headers, agent } = await agentRunning(modules.STREAM_ENDS_WITHOUT_DONE);
    const events = await collectSse(
      await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("x") }),
    );
    expect(events.map((e) => e.event)).toEqual(["delta", "delta", "error"]);
    expect(events[2]!.data.code).toBe("upstream_invalid_response");
  });

  it("ends a stream that stalls longer than INVOKE_TIMEOUT_MS with an upstream_timeout error event", async () => {
    const { headers, agent } = await agentRunning(modules.streamStalls(5_000));
    const res = await callWithEnv({ INVOKE_TIMEOUT_MS: "300" }, "POST", `/v1/invoke/${agent.id}/stream`, {
      headers,
      body: userMessage("x"),
    });
    const events = await collectSse(res);
    expect(events.map((e) => e.event)).toEqual(["delta", "error"]);
    expect(events[1]!.data.code).toBe("upstream_timeout");
  });

  it("times each event: an agent dribbling bytes without finishing an event hits INVOKE_TIMEOUT_MS, and is cancelled", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const key = crypto.randomUUID();
    // One byte every 300 ms: a timer reset by every chunk would never fire.
    const res = await callWithEnv({ INVOKE_TIMEOUT_MS: "1000" }, "POST", `/v1/invoke/${agent.id}/stream`, {
      headers,
      body: userMessage(`dribble ${key}`),
    });
    const events = await collectWithin(res, 3_500);
    expect(events.map((e) => e.event)).toEqual(["delta", "error"]);
    expect(events[1]!.data).toMatchObject({ code: "upstream_timeout" });
    await expectAgentStreamCancelled(headers, agent.id, key);
    expect(await gatewayEvent(res.headers.get("x-request-id")!)).toMatchObject({
      streaming: 1,
      status: "error",
      error_code: "upstream_timeout",
    });
  });

  it("ends a lively stream at the tier's streamSeconds with stream_time_limit, and cancels the agent's stream", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const key = crypto.randomUUID();
    const res = await callWithEnv(
      { TIER_LIMITS: JSON.stringify({ free: { streamSeconds: 2 } }) },
      "POST",
      `/v1/invoke/${agent.id}/stream`,
      { headers, body: userMessage(`lively ${key}`) },
    );
    const events = await collectWithin(res, 5_000);
    // An event every 200 ms for 2 s: the idle timer never fires, the overall deadline does.
    expect(events.length).toBeGreaterThan(3);
    expect(events.slice(0, -1).every((e) => e.event === "delta")).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: "error", data: { code: "stream_time_limit" } });
    expect(events.at(-1)!.data.message).toContain("2 s");
    await expectAgentStreamCancelled(headers, agent.id, key);
    expect(await gatewayEvent(res.headers.get("x-request-id")!)).toMatchObject({
      streaming: 1,
      status: "error",
      error_code: "stream_time_limit",
    });
  });

  it("reassembles events split across chunks (and CRLF line ends) before relaying them", async () => {
    const { headers, agent } = await agentRunning(modules.STREAM_SPLIT_EVENTS);
    const events = await collectSse(
      await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("x") }),
    );
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ["delta", { text: "split" }],
      ["done", { output: { text: "split" } }],
    ]);
  });
});

describe("invoke: the gateway's measurement", () => {
  it("is written directly (metrics_events and billing_usage) when the usage queue refuses it", async () => {
    const ok = await agentRunning();
    const requestId = `req_fallback_${crypto.randomUUID().slice(0, 8)}`;
    const failingQueue = {
      send: async () => {
        throw new Error("queue down");
      },
    };
    const deploymentId = ok.deployment.id;
    const userId = await env.DB.prepare("SELECT user_id AS u FROM deployments WHERE id = ?")
      .bind(deploymentId)
      .first<{ u: string }>();
    await recordInvocation(
      { db: createDb(env.DB), usageQueue: failingQueue },
      {
        requestId,
        userId: userId!.u,
        agentId: ok.agent.id,
        deploymentId,
        runtimeProvider: "cloudflare",
        startedAt: Date.now(),
        durationMs: 7,
        ok: true,
        bytesIn: 10,
        bytesOut: 20,
        streaming: false,
      },
    );
    expect(await gatewayEvent(requestId)).toMatchObject({ duration_ms: 7, bytes_in: 10, bytes_out: 20 });
    const usage = await env.DB.prepare("SELECT requests FROM billing_usage WHERE user_id = ? AND agent_id = ?")
      .bind(userId!.u, ok.agent.id)
      .first<{ requests: number }>();
    expect(usage!.requests).toBeGreaterThanOrEqual(1);
  });

  it("records successes and failures as gateway metrics events, once per request", async () => {
    const ok = await agentRunning();
    const res = await call("POST", `/v1/invoke/${ok.agent.id}`, {
      headers: ok.headers,
      body: userMessage("measure me"),
    });
    const body = await res.text();
    const row = await gatewayEvent(res.headers.get("x-request-id")!);
    expect(row).toMatchObject({
      user_id: expect.stringMatching(/^usr_/),
      status: "ok",
      streaming: 0,
      runtime_provider: "cloudflare",
      bytes_out: body.length,
      trace_id: res.headers.get("x-request-id"),
    });
    expect(row.duration_ms).toBeGreaterThanOrEqual(0);

    const failing = await agentRunning(modules.THROWS_ON_INVOKE);
    const bad = await call("POST", `/v1/invoke/${failing.agent.id}`, {
      headers: failing.headers,
      body: userMessage("x"),
    });
    expect(bad.status).toBe(502);
    expect(await gatewayEvent(bad.headers.get("x-request-id")!)).toMatchObject({
      status: "error",
      error_code: "upstream_exception",
      bytes_out: 0,
    });
  });
});
