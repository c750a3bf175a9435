// The gateway end to end: real HTTP against `wrangler dev` (started once by global-setup.ts),
// driven exactly as a client would. "An agent's life" is one story told in order — each step
// builds on the one before: create, deploy the template and a custom module, invoke (JSON and
// SSE), report signed telemetry, read metrics and usage, set a secret, roll back, disable,
// delete — with a stranger checking at every stage that none of the owner's things are reachable.
import { exportJWK, generateKeyPair } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import type { Schemas } from "../../clients/typescript/index.ts";
import { readSse, type SseEvent } from "../../scripts/lib/sse.ts";
// The events GET /v1/metrics/recent returns, typed by the schema the gateway serves them with.
import type { MetricsEventView as MetricsEvent } from "../../src/services/metering/event";
import { BUNDLE_ANSWER, multiModuleBundle } from "../fixtures/bundle.ts";
import { api, expectJson, expectProblem, mintToken, newUser, type User, waitFor } from "./harness";
import { PROBE_AGENT_SOURCE, PROBE_PAUSE_MS } from "./probe-agent";

// The API's own types, generated from the OpenAPI document (clients/typescript).
type Agent = Schemas["Agent"];
type Deployment = Schemas["Deployment"];
type Usage = Schemas["UsageReport"];

/** What the probe agent (probe-agent.ts) answers over JSON. */
type ProbeAnswer = {
  output: { text: string };
  deploymentId: string;
  greeting: string | null;
  telemetry?: { body: string; signature: string; deploymentId: string };
};

/** Upper bound for `deploying` → `active` on a loaded 2-core machine (it takes well under 1 s). */
const DEPLOY_TIMEOUT_MS = 15_000;
/** Gateway measurements reach D1 through the usage queue in batches (up to 2 s apart). */
const METERING_TIMEOUT_MS = 15_000;
/** An activate, a new active deployment, a disable or a delete reaches every later invocation within this. */
const ROUTING_STALENESS_MS = 3_000;
/** The probe pauses PROBE_PAUSE_MS between its two deltas; a buffering relay would collapse the gap. */
const MIN_STREAM_GAP_MS = PROBE_PAUSE_MS - 200;
const SECRET_VALUE = "e2e-greeting-from-the-secrets-api";
const STOLEN_INVOKE = { messages: [{ role: "user", content: "stolen" }] };
const STOLEN_MODULE = "export default { fetch() { return Response.json({ output: { text: 'stolen' } }) } }";

async function listAgentIds(user: User): Promise<string[]> {
  const { agents } = await expectJson<{ agents: Agent[] }>(await api("GET", "/v1/agents?limit=100", { user }), 200);
  return agents.map((a) => a.id);
}

async function readAgent(user: User, agentId: string): Promise<Agent> {
  return (await expectJson<{ agent: Agent }>(await api("GET", `/v1/agents/${agentId}`, { user }), 200)).agent;
}

async function listDeployments(user: User, agentId: string): Promise<Deployment[]> {
  const res = await api("GET", `/v1/agents/${agentId}/deployments`, { user });
  return (await expectJson<{ deployments: Deployment[] }>(res, 200)).deployments;
}

async function listSecretNames(user: User, agentId: string): Promise<string[]> {
  const res = await api("GET", `/v1/agents/${agentId}/secrets`, { user });
  return (await expectJson<{ secrets: Array<{ name: string }> }>(res, 200)).secrets.map((s) => s.name);
}

async function readUsage(user: User, period?: string): Promise<Usage> {
  const path = period === undefined ? "/v1/usage/current" : `/v1/usage?period=${period}`;
  return expectJson<Usage>(await api("GET", path, { user }), 200);
}

/** The current UTC billing period, YYYY-MM. */
const currentPeriod = () => new Date().toISOString().slice(0, 7);

async function recentMetrics(user: User, agentId: string): Promise<MetricsEvent[]> {
  const res = await api("GET", `/v1/metrics/recent?agentId=${agentId}&limit=200`, { user });
  return (await expectJson<{ events: MetricsEvent[] }>(res, 200)).events;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** POST …/deploy (no body at all for the template); checks the 202 and its Location. */
async function deploy(user: User, agentId: string, body?: { moduleCode: string }): Promise<Deployment> {
  const res = await api("POST", `/v1/agents/${agentId}/deploy`, { user, body });
  const { deployment } = await expectJson<{ deployment: Deployment }>(res, 202);
  expect(deployment).toMatchObject({ agentId, status: "deploying", activatedAt: null, errorMessage: null });
  expect(res.headers.get("location")).toBe(`/v1/agents/${agentId}/deployments/${deployment.id}`);
  return deployment;
}

/** Polls GET …/deployments/:id until `active` (a `failed` deployment ends the wait with its message). */
async function waitUntilActive(user: User, agentId: string, deploymentId: string): Promise<Deployment> {
  return waitFor(
    `deployment ${deploymentId} to become active`,
    async () => {
      const res = await api("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`, { user });
      const { deployment } = await expectJson<{ deployment: Deployment }>(res, 200);
      if (deployment.status === "failed") throw new Error(`deployment failed: ${deployment.errorMessage}`);
      return deployment.status === "active" ? deployment : undefined;
    },
    { timeoutMs: DEPLOY_TIMEOUT_MS, intervalMs: 50 },
  );
}

/** Request ids of the invocations the gateway measured (those that reached a deployment), per user. */
const measuredRequests = new Map<string, string[]>();
function measured(user: User): string[] {
  const ids = measuredRequests.get(user.subject) ?? [];
  measuredRequests.set(user.subject, ids);
  return ids;
}

/** POST /v1/invoke/:agentId (or …/stream) with one user message, noting what the gateway will meter. */
async function invoke(
  user: User,
  agentId: string,
  content: string,
  opts: { stream?: boolean; extra?: Record<string, unknown> } = {},
): Promise<Response> {
  const path = `/v1/invoke/${agentId}${opts.stream ? "/stream" : ""}`;
  const res = await api("POST", path, { user, body: { messages: [{ role: "user", content }], ...opts.extra } });
  // A deployment was chosen (so the gateway records a measurement) exactly when it names one.
  if (res.headers.get("x-deployment-id")) measured(user).push(res.headers.get("x-request-id") ?? "");
  return res;
}

async function invokeProbe(
  user: User,
  agentId: string,
  content: string,
  extra?: Record<string, unknown>,
): Promise<{ answer: ProbeAnswer; requestId: string }> {
  const res = await invoke(user, agentId, content, { extra });
  const answer = await expectJson<ProbeAnswer>(res, 200);
  expect(res.headers.get("x-deployment-id")).toBe(answer.deploymentId);
  return { answer, requestId: res.headers.get("x-request-id") ?? "" };
}

/** Invokes the probe until the given deployment answers (routing may lag an activation briefly). */
async function invokeProbeServedBy(user: User, agentId: string, deploymentId: string, content: string) {
  return waitFor(
    `invocations to reach deployment ${deploymentId}`,
    async () => {
      const result = await invokeProbe(user, agentId, content);
      return result.answer.deploymentId === deploymentId ? result : undefined;
    },
    { timeoutMs: ROUTING_STALENESS_MS, intervalMs: 100 },
  );
}

/** Invokes until the answer is a problem with this status (routing may lag a disable/delete briefly). */
async function invokeUntilRefused(user: User, agentId: string, status: number): Promise<Response> {
  return waitFor(
    `invocations of ${agentId} to be refused with ${status}`,
    async () => {
      const res = await invoke(user, agentId, "are you there?");
      if (res.status === status) return res;
      await res.body?.cancel();
      return undefined;
    },
    { timeoutMs: ROUTING_STALENESS_MS, intervalMs: 100 },
  );
}

type Attempt = { method: string; path: string; body?: unknown };

/**
 * Every request a stranger could make against someone else's agent (and, given their ids, its
 * deployments). Add each new per-agent route here: the isolation checks then cover it. After the
 * agent is deleted its owner gets the same 404 on every one of them.
 */
function strangerAttempts(agentId: string, deploymentIds: string[] = []): Attempt[] {
  return [
    { method: "GET", path: `/v1/agents/${agentId}` },
    { method: "PATCH", path: `/v1/agents/${agentId}`, body: { name: "stolen" } },
    { method: "POST", path: `/v1/agents/${agentId}/deploy` },
    { method: "POST", path: `/v1/agents/${agentId}/deploy`, body: { moduleCode: STOLEN_MODULE } },
    { method: "GET", path: `/v1/agents/${agentId}/deployments` },
    ...deploymentIds.flatMap((id) => [
      { method: "GET", path: `/v1/agents/${agentId}/deployments/${id}` },
      { method: "POST", path: `/v1/agents/${agentId}/deployments/${id}/activate` },
    ]),
    { method: "POST", path: `/v1/invoke/${agentId}`, body: STOLEN_INVOKE },
    { method: "POST", path: `/v1/invoke/${agentId}/stream`, body: STOLEN_INVOKE },
    { method: "POST", path: `/v1/agents/${agentId}/runs`, body: STOLEN_INVOKE },
    { method: "GET", path: `/v1/agents/${agentId}/secrets` },
    { method: "PUT", path: `/v1/agents/${agentId}/secrets/GREETING`, body: { value: "stolen" } },
    { method: "PUT", path: `/v1/agents/${agentId}/secrets/STOLEN`, body: { value: "stolen" } },
    { method: "DELETE", path: `/v1/agents/${agentId}/secrets/GREETING` },
    { method: "GET", path: `/v1/metrics/recent?agentId=${agentId}` },
    { method: "GET", path: `/v1/agents/${agentId}/stats?window=7d` },
    { method: "POST", path: `/v1/agents/${agentId}/disable` },
    { method: "DELETE", path: `/v1/agents/${agentId}` },
  ];
}

async function expectAllNotFound(user: User, attempts: Attempt[]): Promise<void> {
  for (const attempt of attempts) {
    const res = await api(attempt.method, attempt.path, { user, body: attempt.body });
    const label = `${attempt.method} ${attempt.path}`;
    const problem = await expectProblem(res, 404, "not_found").catch((err: Error) => {
      throw new Error(`${label}: ${err.message}`);
    });
    expect(problem.detail, label).not.toContain("stolen");
  }
}

/**
 * The stranger gets a 404 on every route of the owner's agent, and also when naming the owner's
 * deployments under an agent of their own; the owner's agent never shows in their list.
 */
async function expectLockedOut(
  stranger: User,
  target: { agentId: string; deploymentIds?: string[]; strangersAgentId?: string },
): Promise<void> {
  const deploymentIds = target.deploymentIds ?? [];
  await expectAllNotFound(stranger, strangerAttempts(target.agentId, deploymentIds));
  if (target.strangersAgentId) {
    const own = target.strangersAgentId;
    await expectAllNotFound(
      stranger,
      deploymentIds.flatMap((id) => [
        { method: "GET", path: `/v1/agents/${own}/deployments/${id}` },
        { method: "POST", path: `/v1/agents/${own}/deployments/${id}/activate` },
      ]),
    );
    expect((await listDeployments(stranger, own)).map((d) => d.id)).toEqual([]);
  }
  expect(await listAgentIds(stranger)).not.toContain(target.agentId);
}

describe("service surface", () => {
  it("answers /healthz with a request id", async () => {
    const res = await api("GET", "/healthz");
    expect(await expectJson(res, 200)).toEqual({ ok: true });
  });

  it("serves an OpenAPI 3.1 document describing every route the suite drives", async () => {
    const doc = await expectJson<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      await api("GET", "/openapi.json"),
      200,
    );
    expect(doc.openapi).toBe("3.1.0");
    const driven: Record<string, string[]> = {
      "/v1/agents": ["get", "post"],
      "/v1/agents/{agentId}": ["delete", "get", "patch"],
      "/v1/agents/{agentId}/disable": ["post"],
      "/v1/agents/{agentId}/deploy": ["post"],
      "/v1/agents/{agentId}/deployments": ["get"],
      "/v1/agents/{agentId}/deployments/{deploymentId}": ["get"],
      "/v1/agents/{agentId}/deployments/{deploymentId}/activate": ["post"],
      "/v1/agents/{agentId}/secrets": ["get"],
      "/v1/agents/{agentId}/secrets/{name}": ["delete", "put"],
      "/v1/invoke/{agentId}": ["post"],
      "/v1/invoke/{agentId}/stream": ["post"],
      "/v1/telemetry/report": ["post"],
      "/v1/metrics/recent": ["get"],
      "/v1/usage/current": ["get"],
      "/v1/usage": ["get"],
    };
    for (const [path, methods] of Object.entries(driven)) {
      expect(Object.keys(doc.paths[path] ?? {}).sort(), path).toEqual(methods);
    }
  });

  it("serves a self-contained HTML docs page listing every documented operation", async () => {
    const doc = await expectJson<{ paths: Record<string, Record<string, unknown>> }>(
      await api("GET", "/openapi.json"),
      200,
    );
    const res = await api("GET", "/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops)) {
        expect(html, `${method} ${path}`).toContain(
          `<code>${method.toUpperCase()}</code></td><td><code>${path}</code>`,
        );
      }
    }
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="https?:/);
  });

  it("answers an unknown route with a 404 problem", async () => {
    await expectProblem(await api("GET", "/no-such-page"), 404, "route_not_found");
  });
});

describe("authentication", () => {
  let outsiderJwk: string;

  beforeAll(async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    outsiderJwk = JSON.stringify({ ...(await exportJWK(privateKey)), kid: "e2e-es256", alg: "ES256" });
  });

  it("refuses a request without credentials, or with credentials that are not a bearer token", async () => {
    await expectProblem(await api("GET", "/v1/agents"), 401, "unauthenticated");
    const basic = { authorization: "Basic dXNlcjpwYXNz" };
    await expectProblem(await api("GET", "/v1/agents", { headers: basic }), 401, "unauthenticated");
  });

  it("refuses garbage, expired, wrong-issuer and unknown-key tokens", async () => {
    const tokens: Record<string, string> = {
      garbage: "not.a.jwt",
      expired: await mintToken("e2e|expired", { expiresIn: -3600 }),
      wrongIssuer: await mintToken("e2e|issuer", { issuer: "https://someone-else.example" }),
      // Same kid as the server's key, different key: the signature must not verify.
      unknownKey: await mintToken("e2e|forger", { signingJwk: outsiderJwk }),
    };
    for (const [label, token] of Object.entries(tokens)) {
      const res = await api("GET", "/v1/agents", { headers: { authorization: `Bearer ${token}` } });
      const problem = await expectProblem(res, 401, "invalid_token");
      expect(problem.detail, label).not.toContain(token);
    }
  });

  it("accepts a token from the run's key and creates the user on first sight", async () => {
    const user = await newUser("first-sight");
    expect(await expectJson(await api("GET", "/v1/agents", { user }), 200)).toEqual({ agents: [], nextCursor: null });
  });
});

describe("an agent's life, seen by its owner and by a stranger", () => {
  let owner: User;
  let stranger: User;
  let agent: Agent;
  let strangersAgent: Agent;
  let template: Deployment;
  let probeV1: Deployment;
  let probeV2: Deployment;
  /** Request ids of invocations whose telemetry or measurement later steps look up. */
  const requests: { template?: string; stream?: string } = {};
  let reportedEventId: string;

  const deploymentIds = () => [template, probeV1, probeV2].filter((d) => d !== undefined).map((d) => d.id);

  beforeAll(async () => {
    owner = await newUser("owner");
    stranger = await newUser("stranger");
  });

  it("creates an agent", async () => {
    const res = await api("POST", "/v1/agents", { user: owner, body: { name: "support-bot", description: "e2e" } });
    ({ agent } = await expectJson<{ agent: Agent }>(res, 201));
    expect(agent).toMatchObject({
      name: "support-bot",
      description: "e2e",
      status: "active",
      activeDeploymentId: null,
    });
    expect(agent.id).toMatch(/^agt_[0-9a-z]{26}$/);
  });

  it("lists and reads it for its owner", async () => {
    expect(await listAgentIds(owner)).toEqual([agent.id]);
    expect(await readAgent(owner, agent.id)).toEqual(agent);
  });

  it("keeps it out of the stranger's reach, and lets the stranger use the same name", async () => {
    await expectLockedOut(stranger, { agentId: agent.id });
    const own = await api("POST", "/v1/agents", { user: stranger, body: { name: "support-bot" } });
    ({ agent: strangersAgent } = await expectJson<{ agent: Agent }>(own, 201));
    expect(strangersAgent.id).not.toBe(agent.id);
    expect(await listAgentIds(owner)).toEqual([agent.id]);
    expect(await listDeployments(owner, agent.id)).toEqual([]);
  });

  it("refuses a second agent with the same name for the same owner", async () => {
    const clash = await api("POST", "/v1/agents", { user: owner, body: { name: "support-bot" } });
    const problem = await expectProblem(clash, 409, "agent_name_taken");
    expect(problem.errors).toEqual([{ location: "body.name", message: expect.any(String) }]);
  });

  it("renames it and changes its description", async () => {
    const res = await api("PATCH", `/v1/agents/${agent.id}`, {
      user: owner,
      body: { name: "billing-bot", description: null },
    });
    const { agent: renamed } = await expectJson<{ agent: Agent }>(res, 200);
    expect(renamed).toMatchObject({ id: agent.id, name: "billing-bot", description: null, status: "active" });
    expect(renamed.updatedAt).toBeGreaterThanOrEqual(agent.updatedAt);
    agent = renamed;
  });

  it("refuses to invoke it before anything is deployed", async () => {
    await expectProblem(await invoke(owner, agent.id, "anyone home?"), 409, "no_active_deployment");
  });

  it("deploys the built-in template (no body at all) and the agent points at it once active", async () => {
    const started = performance.now();
    template = await deploy(owner, agent.id);
    expect(template).toMatchObject({
      runtimeProvider: "cloudflare",
      invokePath: "/invoke",
      mainModuleName: "index.mjs",
    });
    template = await waitUntilActive(owner, agent.id, template.id);
    console.log(`e2e: template deploy → active in ${Math.round(performance.now() - started)} ms`);
    expect(template.activatedAt).toEqual(expect.any(Number));
    agent = await readAgent(owner, agent.id);
    expect(agent.activeDeploymentId).toBe(template.id);
  });

  it("invokes the template over JSON: it echoes the last user message", async () => {
    const res = await invoke(owner, agent.id, "hello from the e2e suite", { extra: { sessionId: "e2e-session" } });
    expect(await expectJson(res, 200)).toEqual({
      output: { text: "hello from the e2e suite" },
      sessionId: "e2e-session",
      usage: { inputTokens: 5, outputTokens: 5 },
    });
    expect(res.headers.get("x-deployment-id")).toBe(template.id);
    requests.template = res.headers.get("x-request-id") ?? undefined;
  });

  it("deploys a custom module, which replaces the template once active", async () => {
    probeV1 = await deploy(owner, agent.id, { moduleCode: PROBE_AGENT_SOURCE });
    expect(probeV1.moduleSha256).toBe(await sha256Hex(PROBE_AGENT_SOURCE));
    probeV1 = await waitUntilActive(owner, agent.id, probeV1.id);
    const statuses = (await listDeployments(owner, agent.id)).map((d) => [d.id, d.status]);
    expect(statuses).toEqual([
      [probeV1.id, "active"],
      [template.id, "inactive"],
    ]);
    const { answer } = await invokeProbeServedBy(owner, agent.id, probeV1.id, "ping");
    expect(answer).toEqual({ output: { text: "probe: ping" }, deploymentId: probeV1.id, greeting: null });
  });

  it("streams the custom module's events as they are produced, not when the stream ends", async () => {
    const res = await invoke(owner, agent.id, "stream please", { stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(res.headers.get("x-deployment-id")).toBe(probeV1.id);
    requests.stream = res.headers.get("x-request-id") ?? undefined;
    // Arrival times on the wall clock, comparable with the agent's Date.now() on this machine.
    const events: SseEvent[] = [];
    for await (const event of readSse(res.body!, { now: () => Date.now() })) events.push(event);
    expect(events.map((e) => e.event)).toEqual(["delta", "delta", "done"]);
    const [first, last, done] = events as [SseEvent, SseEvent, SseEvent];
    const lastData = JSON.parse(last.data) as { text: string; producedAt: number };
    expect(JSON.parse(first.data)).toEqual({ text: "first " });
    expect(lastData).toEqual({ text: "last", producedAt: expect.any(Number) });
    expect(JSON.parse(done.data)).toEqual({ output: { text: "first last" }, producedAt: lastData.producedAt });
    // The first event was in the client's hands before the agent had even written the last one…
    expect(first.receivedAt).toBeLessThan(lastData.producedAt);
    // …and most of the agent's pause separates the two arrivals (a buffered stream has no gap).
    expect(last.receivedAt - first.receivedAt).toBeGreaterThanOrEqual(MIN_STREAM_GAP_MS);
  });

  it("accepts telemetry signed with the deployment's secret over HTTP, and refuses it with one byte changed", async () => {
    reportedEventId = `e2e-${crypto.randomUUID()}`;
    const { answer } = await invokeProbe(owner, agent.id, "sign this", {
      metadata: {
        signTelemetry: { eventId: reportedEventId, durationMs: 42, usage: { inputTokens: 1234, outputTokens: 567 } },
      },
    });
    const signed = answer.telemetry!;
    expect(signed.deploymentId).toBe(probeV1.id);
    expect(signed.signature).toMatch(/^v1=[0-9a-f]{64}$/);
    const report = (body: string, signature: string) =>
      api("POST", "/v1/telemetry/report", {
        headers: {
          "content-type": "application/json",
          "x-telemetry-signature": signature,
          "x-telemetry-deployment-id": signed.deploymentId,
        },
        rawBody: body,
      });

    const tamperedBody = signed.body.replace('"inputTokens":1234', '"inputTokens":1235');
    const tamperedSignature = signed.signature.slice(0, -1) + (signed.signature.endsWith("0") ? "1" : "0");
    expect(tamperedBody).not.toBe(signed.body);
    for (const [body, signature] of [
      [tamperedBody, signed.signature],
      [signed.body, tamperedSignature],
    ] as const) {
      const problem = await expectProblem(await report(body, signature), 401, "invalid_telemetry_signature");
      expect(problem).toMatchObject({ check: "signature_mismatch" });
    }
    // Correctly signed, it is verified and queued (202); replayed, it is queued again and the
    // consumer drops the copy: the next test finds it stored exactly once, as signed.
    expect(await expectJson(await report(signed.body, signed.signature), 202)).toEqual({ accepted: 1, queued: true });
    expect(await expectJson(await report(signed.body, signed.signature), 202)).toEqual({ accepted: 1, queued: true });
  });

  it("shows each invocation's measurement and the verified telemetry in metrics, and totals them in usage", async () => {
    const invocations = [...measured(owner)];
    const events = await waitFor(
      "every invocation and telemetry event so far to reach metrics",
      async () => {
        const found = await recentMetrics(owner, agent.id);
        const traced = new Set(found.filter((e) => e.source === "gateway").map((e) => e.traceId));
        const telemetry = found.filter((e) => e.source === "telemetry");
        const complete =
          invocations.every((id) => traced.has(id)) &&
          telemetry.some((e) => e.eventId === reportedEventId) &&
          telemetry.some((e) => e.traceId === requests.template);
        return complete ? found : undefined;
      },
      { timeoutMs: METERING_TIMEOUT_MS, intervalMs: 250 },
    );

    const gateway = events.filter((e) => e.source === "gateway");
    expect(gateway.map((e) => e.traceId).sort()).toEqual([...invocations].sort());
    for (const e of gateway) {
      expect(e).toMatchObject({ agentId: agent.id, kind: "invoke", status: "ok", errorCode: null });
      expect(e.bytesIn).toBeGreaterThan(0);
      expect(e.bytesOut).toBeGreaterThan(0);
    }
    const byTrace = new Map(gateway.map((e) => [e.traceId, e]));
    expect(byTrace.get(requests.template!)).toMatchObject({ deploymentId: template.id, streaming: false });
    expect(byTrace.get(requests.stream!)).toMatchObject({ deploymentId: probeV1.id, streaming: true });
    expect(byTrace.get(requests.stream!)?.durationMs).toBeGreaterThanOrEqual(MIN_STREAM_GAP_MS);

    const telemetry = events.filter((e) => e.source === "telemetry");
    expect(telemetry).toHaveLength(2);
    // The template reported its own invocation through its TELEMETRY binding, traced by request id…
    expect(telemetry.find((e) => e.traceId === requests.template)).toMatchObject({
      deploymentId: template.id,
      status: "ok",
      inputTokens: 5,
      outputTokens: 5,
    });
    // …and the report the suite posted over HTTP is stored as signed.
    expect(telemetry.find((e) => e.eventId === reportedEventId)).toMatchObject({
      deploymentId: probeV1.id,
      status: "ok",
      durationMs: 42,
      inputTokens: 1234,
      outputTokens: 567,
    });

    const sum = (list: MetricsEvent[], field: keyof MetricsEvent) =>
      list.reduce((total, e) => total + Number(e[field] ?? 0), 0);
    const expected: Schemas["UsageTotals"] = {
      requests: gateway.length,
      errors: 0,
      durationMsTotal: sum(gateway, "durationMs"),
      bytesIn: sum(gateway, "bytesIn"),
      bytesOut: sum(gateway, "bytesOut"),
      inputTokens: sum(telemetry, "inputTokens"),
      outputTokens: sum(telemetry, "outputTokens"),
      // This agent makes no outbound calls: nothing goes through the egress door.
      modelInputTokens: 0,
      modelOutputTokens: 0,
      egressRequests: 0,
    };
    const usage = await waitFor(
      "usage to count every invocation and token so far",
      async () => {
        const current = await readUsage(owner);
        const { requests: n, inputTokens } = current.usage;
        return n >= expected.requests && inputTokens >= expected.inputTokens ? current : undefined;
      },
      { timeoutMs: METERING_TIMEOUT_MS, intervalMs: 250 },
    );
    expect(usage).toMatchObject({
      periodKey: currentPeriod(),
      tier: "free",
      usage: expected,
      agents: [{ agentId: agent.id, name: agent.name, deleted: false, usage: expected }],
    });
    expect(usage.remaining.invocations).toBe(usage.limits.invocationsPerPeriod! - expected.requests);
    // The same period asked for by name gives the same report.
    expect(await readUsage(owner, usage.periodKey)).toMatchObject({ usage: expected, agents: usage.agents });
  });

  it("stores a secret write-only: the running deployment does not see it, the next deployment does", async () => {
    const put = await api("PUT", `/v1/agents/${agent.id}/secrets/GREETING`, {
      user: owner,
      body: { value: SECRET_VALUE },
    });
    const { secret } = await expectJson(put, 201);
    expect(secret).toEqual({ name: "GREETING", createdAt: expect.any(Number), updatedAt: expect.any(Number) });
    const listed = await api("GET", `/v1/agents/${agent.id}/secrets`, { user: owner });
    expect(await listed.clone().text()).not.toContain(SECRET_VALUE);
    expect(await expectJson(listed, 200)).toEqual({ secrets: [secret] });

    const before = await invokeProbe(owner, agent.id, "secret yet?");
    expect(before.answer).toMatchObject({ deploymentId: probeV1.id, greeting: null });

    probeV2 = await deploy(owner, agent.id, { moduleCode: PROBE_AGENT_SOURCE });
    expect(probeV2.moduleSha256).toBe(probeV1.moduleSha256);
    probeV2 = await waitUntilActive(owner, agent.id, probeV2.id);
    const after = await invokeProbeServedBy(owner, agent.id, probeV2.id, "secret now?");
    expect(after.answer).toEqual({
      output: { text: "probe: secret now?" },
      deploymentId: probeV2.id,
      greeting: SECRET_VALUE,
    });
  });

  it("rolls back to an earlier deployment, which answers again with the secrets it was deployed with", async () => {
    const res = await api("POST", `/v1/agents/${agent.id}/deployments/${probeV1.id}/activate`, { user: owner });
    const { deployment } = await expectJson<{ deployment: Deployment }>(res, 200);
    expect(deployment).toMatchObject({ id: probeV1.id, status: "active" });
    expect(deployment.activatedAt).toBeGreaterThanOrEqual(probeV2.activatedAt!);
    const statuses = (await listDeployments(owner, agent.id)).map((d) => [d.id, d.status]);
    expect(statuses).toEqual([
      [probeV2.id, "inactive"],
      [probeV1.id, "active"],
      [template.id, "inactive"],
    ]);
    agent = await readAgent(owner, agent.id);
    expect(agent.activeDeploymentId).toBe(probeV1.id);

    const { answer } = await invokeProbeServedBy(owner, agent.id, probeV1.id, "who answers?");
    expect(answer).toEqual({ output: { text: "probe: who answers?" }, deploymentId: probeV1.id, greeting: null });
  });

  it("still shows the stranger nothing after the owner's changes, and their attempts change nothing", async () => {
    const ownersView = async () => ({
      agent: await readAgent(owner, agent.id),
      deployments: await listDeployments(owner, agent.id),
      secrets: await listSecretNames(owner, agent.id),
    });
    const before = await ownersView();
    expect(before.agent).toEqual(agent);
    expect(before.secrets).toEqual(["GREETING"]);

    await expectLockedOut(stranger, {
      agentId: agent.id,
      deploymentIds: deploymentIds(),
      strangersAgentId: strangersAgent.id,
    });

    expect(await ownersView()).toEqual(before);
    const { answer } = await invokeProbe(owner, agent.id, "still mine?");
    expect(answer).toMatchObject({ deploymentId: probeV1.id, greeting: null });
    // None of the owner's invocations or tokens show in the stranger's usage (they made none).
    const theirs = await readUsage(stranger);
    expect(theirs.agents).toEqual([]);
    for (const id of [agent.id, ...deploymentIds()]) expect(JSON.stringify(theirs)).not.toContain(id);
    expect(await readUsage(stranger, currentPeriod())).toMatchObject({ usage: theirs.usage, agents: [] });
    expect(theirs.usage).toMatchObject({
      requests: 0,
      errors: 0,
      durationMsTotal: 0,
      bytesIn: 0,
      bytesOut: 0,
      inputTokens: 0,
      outputTokens: 0,
    });
    expect(await recentMetrics(stranger, strangersAgent.id)).toEqual([]);
  });

  it("disables it: invocations, deploys and rollbacks are refused with 409 agent_disabled", async () => {
    const res = await api("POST", `/v1/agents/${agent.id}/disable`, { user: owner });
    const { agent: disabled } = await expectJson<{ agent: Agent }>(res, 200);
    expect(disabled).toMatchObject({ id: agent.id, status: "disabled", activeDeploymentId: probeV1.id });
    expect((await readAgent(owner, agent.id)).status).toBe("disabled");

    await expectProblem(await invokeUntilRefused(owner, agent.id, 409), 409, "agent_disabled");
    await expectProblem(await invoke(owner, agent.id, "stream?", { stream: true }), 409, "agent_disabled");
    await expectProblem(
      await api("POST", `/v1/agents/${agent.id}/deploy`, { user: owner, body: { moduleCode: PROBE_AGENT_SOURCE } }),
      409,
      "agent_disabled",
    );
    await expectProblem(
      await api("POST", `/v1/agents/${agent.id}/deployments/${template.id}/activate`, { user: owner }),
      409,
      "agent_disabled",
    );
    // Reads still work, and nothing moved.
    expect((await listDeployments(owner, agent.id)).map((d) => [d.id, d.status])).toEqual([
      [probeV2.id, "inactive"],
      [probeV1.id, "active"],
      [template.id, "inactive"],
    ]);
  });

  it("deletes it: every per-agent route is then a 404 for its owner too, and its usage stays counted", async () => {
    const res = await api("DELETE", `/v1/agents/${agent.id}`, { user: owner });
    expect(res.status).toBe(204);
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    expect(await res.text()).toBe("");
    await expectProblem(await invokeUntilRefused(owner, agent.id, 404), 404, "not_found");
    await expectAllNotFound(owner, strangerAttempts(agent.id, deploymentIds()));
    expect(await listAgentIds(owner)).toEqual([]);

    // Usage covers the whole period, deleted agents included: every measured invocation is there.
    const invocations = measured(owner).length;
    const usage = await waitFor(
      "usage to count every invocation of the deleted agent",
      async () => {
        const current = await readUsage(owner);
        return current.usage.requests >= invocations ? current : undefined;
      },
      { timeoutMs: METERING_TIMEOUT_MS, intervalMs: 250 },
    );
    const totals = { requests: invocations, errors: 0, inputTokens: 1234 + 5, outputTokens: 567 + 5 };
    expect(usage.usage).toMatchObject(totals);
    expect(usage.agents).toMatchObject([{ agentId: agent.id, name: null, deleted: true, usage: totals }]);
  });
});

describe("a multi-module bundle over HTTP", () => {
  it("deploys ES, CommonJS, JSON, text, data and WebAssembly modules as one agent, which answers", async () => {
    const user = await newUser("bundler");
    const created = await api("POST", "/v1/agents", { user, body: { name: "bundled" } });
    const agentId = (await expectJson<{ agent: Agent }>(created, 201)).agent.id;
    const res = await api("POST", `/v1/agents/${agentId}/deploy`, {
      user,
      body: { ...multiModuleBundle(), compatibilityFlags: ["nodejs_compat"] },
    });
    const { deployment } = await expectJson<{ deployment: Deployment }>(res, 202);
    expect(deployment.mainModuleName).toBe("src/index.js");
    await waitUntilActive(user, agentId, deployment.id);
    const answer = await invoke(user, agentId, "bob");
    expect(answer.headers.get("x-deployment-id")).toBe(deployment.id);
    const body = await expectJson<{ output: { text: string } }>(answer, 200);
    expect(body.output.text).toBe(BUNDLE_ANSWER);
  });
});

describe("bad requests get a problem+json answer, never a 500", () => {
  let user: User;
  let agentId: string;

  beforeAll(async () => {
    user = await newUser("mistakes");
    const res = await api("POST", "/v1/agents", { user, body: { name: "target" } });
    agentId = (await expectJson<{ agent: Agent }>(res, 201)).agent.id;
  });

  it("refuses malformed JSON, a non-JSON content type and an oversize body", async () => {
    const json = { "content-type": "application/json" };
    await expectProblem(
      await api("POST", "/v1/agents", { user, headers: json, rawBody: '{"name": "x"' }),
      400,
      "malformed_json",
    );
    await expectProblem(
      await api("POST", "/v1/agents", { user, headers: { "content-type": "text/plain" }, rawBody: "name=x" }),
      415,
      "unsupported_media_type",
    );
    const huge = JSON.stringify({ name: "big", description: "x".repeat(70 * 1024) });
    await expectProblem(
      await api("POST", "/v1/agents", { user, headers: json, rawBody: huge }),
      413,
      "payload_too_large",
    );
  });

  it("lists every bad field, and refuses fields the server owns", async () => {
    const bad = await api("POST", "/v1/agents", { user, body: { name: "", description: 5 } });
    const problem = await expectProblem(bad, 400, "validation_failed");
    expect(problem.errors?.map((e) => e.location).sort()).toEqual(["body.description", "body.name"]);

    const sneaky = await api("POST", "/v1/agents", {
      user,
      body: { name: "sneaky", id: "agt_00000000000000000000000000", userId: "someone", status: "disabled" },
    });
    const refused = await expectProblem(sneaky, 400, "validation_failed");
    expect(refused.errors?.map((e) => e.location).sort()).toEqual(["body.id", "body.status", "body.userId"]);
    const patch = await api("PATCH", `/v1/agents/${agentId}`, { user, body: { activeDeploymentId: "dep_x" } });
    await expectProblem(patch, 400, "validation_failed");
    expect(await listAgentIds(user)).toEqual([agentId]);
  });

  it("refuses bad list parameters", async () => {
    for (const limit of ["0", "-1", "1.5", "NaN", "1e9", "101"]) {
      await expectProblem(await api("GET", `/v1/agents?limit=${limit}`, { user }), 400, "validation_failed");
    }
    await expectProblem(await api("GET", "/v1/agents?cursor=not-a-cursor", { user }), 400, "invalid_cursor");
  });

  it("answers unknown ids and unknown /v1 routes with 404 problems", async () => {
    await expectProblem(await api("GET", "/v1/agents/agt_00000000000000000000000000", { user }), 404, "not_found");
    await expectProblem(await api("GET", "/v1/agents/not-an-id", { user }), 404, "not_found");
    await expectProblem(await api("GET", "/v1/no-such-thing", { user }), 404, "route_not_found");
  });
});
