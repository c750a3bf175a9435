// The built-in agent, tested as the exact module string the gateway deploys
// (TEMPLATE_MODULE_CODE), run in its own isolate by the Worker Loader with the env the gateway
// injects; TELEMETRY is a recording fake (fake-telemetry.mjs).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { fromBase64, toBase64Url } from "../../src/crypto/encoding";
import { verifyHmacHex } from "../../src/crypto/hmac";
import { DEFAULT_COMPATIBILITY_DATE, DEFAULT_MAIN_MODULE_NAME } from "../../src/services/deployments/defaults";
import { TEMPLATE_MODULE_CODE } from "../../src/services/deployments/template-module.generated";
import { collectSse } from "../../tests/helpers/sse";
import { waitFor } from "../../tests/helpers/wait";

type Loaded = { agent: Fetcher; deploymentId: string; secret: string };

function loadTemplate(opts: { telemetry?: boolean; failingTelemetry?: boolean } = {}): Loaded {
  const deploymentId = `${opts.failingTelemetry ? "fail-" : ""}dep_${crypto.randomUUID()}`;
  const secret = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  const stub = env.LOADER!.get(`template-test-${deploymentId}`, () => ({
    compatibilityDate: DEFAULT_COMPATIBILITY_DATE,
    mainModule: DEFAULT_MAIN_MODULE_NAME,
    modules: { [DEFAULT_MAIN_MODULE_NAME]: { js: TEMPLATE_MODULE_CODE } },
    env: {
      USER_ID: "usr_template_test",
      AGENT_ID: "agt_template_test",
      DEPLOYMENT_ID: deploymentId,
      RUNTIME_PROVIDER: "cloudflare",
      TELEMETRY_SECRET: secret,
      ...(opts.telemetry === false ? {} : { TELEMETRY: env.FAKE_TELEMETRY }),
    },
    globalOutbound: null,
  }));
  return { agent: stub.getEntrypoint(), deploymentId, secret };
}

function invoke(agent: Fetcher, body: unknown, accept = "application/json", headers: Record<string, string> = {}) {
  return agent.fetch("https://agent.internal/invoke", {
    method: "POST",
    headers: { "content-type": "application/json", accept, ...headers },
    body: JSON.stringify(body),
  });
}

const conversation = {
  messages: [
    { role: "system", content: "You are an echo." },
    { role: "user", content: "first question" },
    { role: "assistant", content: "first answer" },
    { role: "user", content: "hello there from the test" },
  ],
  sessionId: "sess-1",
};

async function reportsOnce(deploymentId: string) {
  return waitFor(
    async () => {
      const reports = await env.FAKE_TELEMETRY.reportsFor(deploymentId);
      return reports.length > 0 ? reports : undefined;
    },
    { what: "a telemetry report" },
  );
}

describe("user-worker-template", () => {
  it("answers invoke/v1 JSON by echoing the last user message, with word-count usage and the sessionId", async () => {
    const { agent } = loadTemplate();
    const res = await invoke(agent, conversation);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      output: { text: "hello there from the test" },
      sessionId: "sess-1",
      usage: { inputTokens: 13, outputTokens: 5 },
    });
  });

  it("streams SSE: one delta per word, in order, then done carrying the full response", async () => {
    const { agent } = loadTemplate();
    const res = await invoke(agent, conversation, "text/event-stream");
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await collectSse(res);
    const deltas = events.filter((e) => e.event === "delta");
    expect(deltas.length).toBe(5);
    expect(deltas.map((e) => e.data.text).join("")).toBe("hello there from the test");
    expect(events.at(-1)?.event).toBe("done");
    expect(events.slice(0, -1).every((e) => e.event === "delta")).toBe(true);
    expect(events.at(-1)?.data).toEqual({
      output: { text: "hello there from the test" },
      sessionId: "sess-1",
      usage: { inputTokens: 13, outputTokens: 5 },
    });
  });

  it("reports exactly one telemetry event per invocation, signed over the exact body bytes", async () => {
    const { agent, deploymentId, secret } = loadTemplate();
    const res = await invoke(agent, conversation, "application/json", { "x-request-id": "req_trace_1" });
    expect(res.status).toBe(200);
    const [report, ...more] = await reportsOnce(deploymentId);
    expect(more).toEqual([]);
    expect(report!.deploymentId).toBe(deploymentId);
    const event = JSON.parse(report!.body);
    expect(event).toMatchObject({
      traceId: "req_trace_1",
      userId: "usr_template_test",
      agentId: "agt_template_test",
      deploymentId,
      runtimeProvider: "cloudflare",
      kind: "invoke",
      status: "ok",
      usage: { inputTokens: 13, outputTokens: 5 },
    });
    expect(typeof event.eventId).toBe("string");
    expect(Math.abs(event.ts - Date.now())).toBeLessThan(60_000);
    const match = /^v1=([0-9a-f]{64})$/.exec(report!.signature);
    expect(match).not.toBeNull();
    const key = fromBase64(secret);
    const bytes = new TextEncoder().encode(report!.body);
    expect(await verifyHmacHex(key, bytes, match![1]!)).toBe(true);
    const tampered = new TextEncoder().encode(report!.body.replace('"ok"', '"error"'));
    expect(await verifyHmacHex(key, tampered, match![1]!)).toBe(false);
  });

  it("reports one telemetry event for a streamed invocation, after the stream ends", async () => {
    const { agent, deploymentId } = loadTemplate();
    await collectSse(await invoke(agent, conversation, "text/event-stream"));
    const reports = await reportsOnce(deploymentId);
    expect(reports).toHaveLength(1);
    expect(JSON.parse(reports[0]!.body)).toMatchObject({ status: "ok", usage: { outputTokens: 5 } });
  });

  it("still answers when the telemetry sink fails or is absent", async () => {
    const failing = loadTemplate({ failingTelemetry: true });
    const res = await invoke(failing.agent, conversation);
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).output.text).toBe("hello there from the test");
    const stream = await collectSse(await invoke(failing.agent, conversation, "text/event-stream"));
    expect(stream.at(-1)?.event).toBe("done");
    // The failing sink was really called (and threw), twice.
    await waitFor(async () =>
      (await env.FAKE_TELEMETRY.reportsFor(failing.deploymentId)).length === 2 ? true : undefined,
    );

    const none = loadTemplate({ telemetry: false });
    const plain = await invoke(none.agent, conversation);
    expect(plain.status).toBe(200);
  });

  it("answers a GET with its status and refuses malformed invocations with 400", async () => {
    const { agent } = loadTemplate();
    const probe = await agent.fetch("https://agent.internal/", { headers: { "x-webhost-probe": "1" } });
    expect(probe.status).toBe(200);
    expect(await probe.json()).toMatchObject({ ok: true, contract: "invoke/v1" });
    const bad = await agent.fetch("https://agent.internal/invoke", { method: "POST", body: "{nope" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.code).toBe("invalid_request");
    const empty = await invoke(agent, { messages: [] });
    expect(empty.status).toBe(400);
  });

  it("answers with empty text when the conversation has no user message", async () => {
    const { agent } = loadTemplate();
    const res = await invoke(agent, { messages: [{ role: "system", content: "be brief" }] }, "text/event-stream");
    const events = await collectSse(res);
    expect(events.map((e) => e.event)).toEqual(["delta", "done"]);
    expect(events[1]!.data.output.text).toBe("");
  });
});
