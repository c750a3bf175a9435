// The AgentCore runtime provider end to end: its own `wrangler dev` configured against the fake
// AWS (scripts/lib/fake-aws.ts, which verifies every SigV4 signature and runs the packaged Node
// wrapper in a child process). An agent deployed with runtimeProvider "agentcore" becomes active,
// answers JSON and an incremental SSE stream, reports telemetry over the public HTTP route (its
// signature verified by the gateway), is metered, rolls back, and is removed on delete; a wrong AWS
// secret ends a deployment `failed` without retries. Also: the shared server, which has no AgentCore
// configuration, refuses the provider with a 400 naming what is missing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, freePort, PROJECT_ROOT, startDevServer } from "../../scripts/lib/dev-server.ts";
import { type FakeAws, startFakeAws } from "../../scripts/lib/fake-aws.ts";
import { httpClient } from "../../scripts/lib/http-client.ts";
import { readSse, type SseEvent } from "../../scripts/lib/sse.ts";
import { mintToken, newSigningKey } from "../../scripts/lib/tokens.ts";
import { contractAgent } from "../fixtures/modules.ts";
import { api, expectProblem, newUser, waitFor } from "./harness.ts";

const ACCESS_KEY_ID = "AKIAFAKEWEBHOSTE2E01";
const SECRET_ACCESS_KEY = "fake/secret+key/for-the-e2e-run-0123456789";
const BUCKET = "webhost-agentcore-e2e";
const INVOKE_TIMEOUT_MS = 4_000;
/** The streaming agent's pause between deltas: a buffered relay would deliver them together. */
const DELTA_GAP_MS = 400;

// The second deployment: JSON (naming its provider and the path it was called on), a slow SSE
// stream, a throw and a hang, on request.
const AGENT_V2 = contractAgent({
  deltas: ["one ", "two ", "three"],
  deltaGapMs: DELTA_GAP_MS,
  throwMessage: "boom from the agent",
  hangMs: INVOKE_TIMEOUT_MS * 3,
  answer: `{ output: { text: "v2 on " + env.RUNTIME_PROVIDER + ": " + text + " at " + new URL(request.url).pathname } }`,
});

type Deployment = { id: string; status: string; errorMessage: string | null; runtimeProvider: string };

let aws: FakeAws;
let server: DevServer;
let call: ReturnType<typeof httpClient>;
let headers: Record<string, string>;

async function json<T = any>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${text}`);
  return JSON.parse(text) as T;
}

async function deploy(agentId: string, body: Record<string, unknown>): Promise<Deployment> {
  const res = await call.request("POST", `/v1/agents/${agentId}/deploy`, {
    headers,
    body: { runtimeProvider: "agentcore", ...body },
  });
  return (await json<{ deployment: Deployment }>(res, 202)).deployment;
}

async function settled(agentId: string, id: string): Promise<Deployment> {
  return waitFor(
    `deployment ${id} to finish`,
    async () => {
      const res = await call.request("GET", `/v1/agents/${agentId}/deployments/${id}`, { headers });
      const { deployment } = await json<{ deployment: Deployment }>(res, 200);
      return deployment.status === "deploying" ? undefined : deployment;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
}

function invoke(agentId: string, content: string, opts: { stream?: boolean; sessionId?: string } = {}) {
  return call.request("POST", `/v1/invoke/${agentId}${opts.stream ? "/stream" : ""}`, {
    headers: { ...headers, ...(opts.stream ? { accept: "text/event-stream" } : {}) },
    body: { messages: [{ role: "user", content }], ...(opts.sessionId ? { sessionId: opts.sessionId } : {}) },
    signal: AbortSignal.timeout(30_000),
  });
}

beforeAll(async () => {
  aws = await startFakeAws({ accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY, region: "us-west-2" });
  const { publicJwk, privateJwk } = await newSigningKey("agentcore-e2e");
  const issuer = `https://issuer.agentcore.test/${crypto.randomUUID()}`;
  const port = await freePort();
  server = await startDevServer({
    port,
    vars: {
      AUTH_ISSUER: issuer,
      AUTH_JWKS: JSON.stringify({ keys: [publicJwk] }),
      INVOKE_TIMEOUT_MS: String(INVOKE_TIMEOUT_MS),
      AGENTCORE_REGION: "us-west-2",
      AGENTCORE_ROLE_ARN: "arn:aws:iam::123456789012:role/webhost-agentcore-e2e",
      AGENTCORE_ARTIFACT_BUCKET: BUCKET,
      AWS_ACCESS_KEY_ID: ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: SECRET_ACCESS_KEY,
      AGENTCORE_CONTROL_ENDPOINT: aws.controlEndpoint,
      AGENTCORE_DATA_ENDPOINT: aws.dataEndpoint,
      AGENTCORE_S3_ENDPOINT: aws.s3Endpoint,
      GATEWAY_PUBLIC_URL: `http://127.0.0.1:${port}`,
    },
    logFile: `${PROJECT_ROOT}/.wrangler/e2e/agentcore-server.log`,
    // As the shared server (global-setup.ts): with E2E_AGENT_HOST=1 this gateway runs with
    // DISPATCH_MODE=host beside AgentCore, as `npm run dev` does.
    agentHost: process.env.E2E_AGENT_HOST === "1",
  });
  const token = await mintToken(JSON.stringify(privateJwk), {
    subject: `e2e|agentcore-${crypto.randomUUID().slice(0, 8)}`,
    issuer,
    expiresIn: 1800,
  });
  headers = { authorization: `Bearer ${token}` };
  call = httpClient({ baseUrl: server.baseUrl, timeoutMs: 30_000 });
}, 180_000);

afterAll(async () => {
  await server?.stop();
  await aws?.stop();
});

describe("the agentcore runtime provider against the fake AWS", () => {
  let agentId = "";
  let template: Deployment;
  let v2: Deployment;
  const measured: string[] = [];

  it("deploys the template: zip in S3 with the wrapper, a READY runtime with the platform's env, the deployment active", async () => {
    const res = await call.request("POST", "/v1/agents", { headers, body: { name: "agentcore-e2e" } });
    agentId = (await json<{ agent: { id: string } }>(res, 201)).agent.id;
    template = await settled(agentId, (await deploy(agentId, {})).id);
    expect(template).toMatchObject({ status: "active", runtimeProvider: "agentcore", errorMessage: null });

    const runtimes = [...aws.runtimes.values()];
    expect(runtimes).toHaveLength(1);
    const rt = runtimes[0]!;
    expect(rt.status).toBe("READY");
    expect(rt.clientToken!.length).toBeGreaterThanOrEqual(33);
    expect(aws.objects.has(`${BUCKET}/${rt.code.prefix}`)).toBe(true);
    expect(rt.environmentVariables).toMatchObject({
      DEPLOYMENT_ID: template.id,
      AGENT_ID: agentId,
      RUNTIME_PROVIDER: "agentcore",
      TELEMETRY_REPORT_URL: `${server.baseUrl}/v1/telemetry/report`,
    });
    expect(rt.environmentVariables.TELEMETRY_SECRET).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Every request was signed with the configured key and verified by the fake.
    expect(aws.requests.filter((r) => r.status === 403)).toEqual([]);
    expect(aws.requests.map((r) => `${r.plane} ${r.method}`)).toContain("control PUT");
  });

  it("answers JSON through the wrapper, and the template reports telemetry over the HTTP route (signature verified)", async () => {
    const res = await invoke(agentId, "hello from agentcore", { sessionId: "chat-1" });
    const body = await json<{ output: { text: string } }>(res, 200);
    expect(body.output.text).toBe("hello from agentcore");
    expect(res.headers.get("x-deployment-id")).toBe(template.id);
    const requestId = res.headers.get("x-request-id")!;
    measured.push(requestId);
    const telemetry = await waitFor(
      "the template's telemetry to be stored",
      async () => {
        const r = await call.request("GET", `/v1/metrics/recent?agentId=${agentId}&limit=100`, { headers });
        const { events } = await json<{ events: any[] }>(r, 200);
        return events.find((e) => e.source === "telemetry" && e.traceId === requestId);
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(telemetry).toMatchObject({ deploymentId: template.id, status: "ok", runtimeProvider: "agentcore" });
  });

  it("deploys a second version and relays its SSE stream event by event", async () => {
    v2 = await settled(agentId, (await deploy(agentId, { moduleCode: AGENT_V2 })).id);
    expect(v2.status).toBe("active");
    const json1 = await json<{ output: { text: string } }>(await invoke(agentId, "ping"), 200);
    // The deployment's invokePath (default /invoke) reaches the agent through an allowlisted header.
    expect(json1.output.text).toBe("v2 on agentcore: ping at /invoke");

    const res = await invoke(agentId, "stream please", { stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    measured.push(res.headers.get("x-request-id")!);
    const runtimeId = [...aws.runtimes.values()].find(
      (r) => r.environmentVariables.DEPLOYMENT_ID === v2.id,
    )!.agentRuntimeId;
    const events: SseEvent[] = [];
    let pingWhileStreaming: string[] = [];
    for await (const event of readSse(res.body!)) {
      // While the agent is still producing, its /ping says HealthyBusy (so AgentCore keeps the session).
      if (events.length === 0) pingWhileStreaming = await aws.pingAgents(runtimeId);
      events.push(event);
    }
    expect(pingWhileStreaming).toEqual(["HealthyBusy"]);
    await waitFor("the agent to be idle again", async () =>
      (await aws.pingAgents(runtimeId)).join() === "Healthy" ? true : undefined,
    );
    const deltas = events.filter((e) => e.event === "delta");
    expect(deltas.map((e) => JSON.parse(e.data).text).join("")).toBe("one two three");
    expect(events.at(-1)?.event).toBe("done");
    // Incremental: the first delta arrived well before the last one was produced.
    expect(deltas.at(-1)!.receivedAt - deltas[0]!.receivedAt).toBeGreaterThanOrEqual(2 * DELTA_GAP_MS - 150);
  });

  it("keeps one AgentCore session per invoke/v1 sessionId of the agent, and a fresh one without", async () => {
    const sessions = async (sessionId?: string) => {
      const before = aws.requests.length;
      expect((await invoke(agentId, "session", { sessionId })).status).toBe(200);
      const sent = aws.requests.slice(before).find((r) => r.plane === "data");
      expect(sent?.sessionId?.length).toBeGreaterThanOrEqual(33);
      return sent!.sessionId!;
    };
    const first = await sessions("conversation-7");
    expect(await sessions("conversation-7")).toBe(first);
    expect(await sessions("conversation-8")).not.toBe(first);
    expect(await sessions()).not.toBe(await sessions());
    // The tenant's id is not sent to AWS as is.
    expect(first).not.toContain("conversation-7");
  });

  it("maps an agent that throws to 502 upstream_exception and one that hangs to 504 upstream_timeout", async () => {
    const thrown = await expectProblem(await invoke(agentId, "throw"), 502, "upstream_exception");
    expect(thrown.detail).toContain("boom from the agent");
    const started = Date.now();
    await expectProblem(await invoke(agentId, "hang"), 504, "upstream_timeout");
    expect(Date.now() - started).toBeLessThan(INVOKE_TIMEOUT_MS * 2);
  });

  it("meters every invocation it routed", async () => {
    const events = await waitFor(
      "the measurements to reach metrics",
      async () => {
        const r = await call.request("GET", `/v1/metrics/recent?agentId=${agentId}&limit=100`, { headers });
        const { events } = await json<{ events: any[] }>(r, 200);
        const gateway = events.filter((e) => e.source === "gateway");
        return measured.every((id) => gateway.some((e) => e.traceId === id)) ? gateway : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(events.find((e) => e.traceId === measured[1])).toMatchObject({ deploymentId: v2.id, streaming: true });
    expect(events.find((e) => e.traceId === measured[0])).toMatchObject({ deploymentId: template.id, status: "ok" });
  });

  it("rolls back to the template's runtime", async () => {
    const res = await call.request("POST", `/v1/agents/${agentId}/deployments/${template.id}/activate`, { headers });
    expect(res.status).toBe(200);
    const answer = await waitFor(
      "the template to answer again",
      async () => {
        const r = await invoke(agentId, "after rollback");
        const body = await json<{ output: { text: string } }>(r, 200);
        return body.output.text === "after rollback" ? r : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 250 },
    );
    expect(answer.headers.get("x-deployment-id")).toBe(template.id);
  });

  it("answers AWS throttling with 503 upstream_unavailable and Retry-After, and AWS's refusals with a generic 502", async () => {
    aws.inject({ plane: "data", status: 429, type: "ThrottlingException", message: "Rate exceeded" });
    const throttled = await invoke(agentId, "busy?");
    expect(throttled.headers.get("retry-after")).toMatch(/^\d+$/);
    await expectProblem(throttled, 503, "upstream_unavailable");

    const secretDetail = "User arn:aws:sts::123456789012:assumed-role/x is not authorized";
    aws.inject({ plane: "data", status: 403, type: "AccessDeniedException", message: secretDetail });
    const refused = await expectProblem(await invoke(agentId, "allowed?"), 502, "upstream_error");
    expect(refused.detail).toMatch(/platform/);
    expect(refused.detail).not.toContain("arn:aws");
    // AWS's detail is for the operator's log only.
    await waitFor("the operator's log line", async () => (server.logs().includes(secretDetail) ? true : undefined));
  });

  it("removes the agent's runtimes and artifacts when the agent is deleted", async () => {
    expect(aws.runtimes.size).toBe(2);
    const res = await call.request("DELETE", `/v1/agents/${agentId}`, { headers });
    expect([200, 204]).toContain(res.status);
    await waitFor(
      "the runtimes and their zips to be deleted",
      async () =>
        aws.runtimes.size === 0 && ![...aws.objects.keys()].some((k) => k.startsWith(`${BUCKET}/`)) ? true : undefined,
      { timeoutMs: 30_000, intervalMs: 250 },
    );
  });

  it("fails a deployment with AWS's reason when the runtime ends CREATE_FAILED", async () => {
    const res = await call.request("POST", "/v1/agents", { headers, body: { name: "agentcore-create-failed" } });
    const other = (await json<{ agent: { id: string } }>(res, 201)).agent.id;
    const reason = "Role validation failed: the execution role cannot be assumed by bedrock-agentcore";
    aws.failNextCreate(reason);
    const failed = await settled(other, (await deploy(other, {})).id);
    expect(failed.status).toBe("failed");
    expect(failed.errorMessage).toContain(reason);
  });

  it("fails a deployment with a readable message, without retrying, when AWS refuses the secret", async () => {
    const res = await call.request("POST", "/v1/agents", { headers, body: { name: "agentcore-wrong-secret" } });
    const other = (await json<{ agent: { id: string } }>(res, 201)).agent.id;
    aws.setSecretAccessKey("a-different-secret-than-the-gateway-has");
    try {
      const before = aws.requests.length;
      const failed = await settled(other, (await deploy(other, {})).id);
      expect(failed.status).toBe("failed");
      expect(failed.errorMessage).toMatch(/misconfigured/);
      expect(failed.errorMessage).not.toContain("a-different-secret");
      // No retry storm: the first refused request ended it, and nothing followed.
      await new Promise((r) => setTimeout(r, 3_000));
      const after = aws.requests.slice(before);
      expect(after).toHaveLength(1);
      expect(after[0]).toMatchObject({ plane: "s3", status: 403 });
      expect(after[0]!.error).toMatch(/^SignatureDoesNotMatch/);
      expect(server.logs()).not.toContain(SECRET_ACCESS_KEY);
    } finally {
      aws.setSecretAccessKey(SECRET_ACCESS_KEY);
    }
  });
});

describe("a gateway without AgentCore configuration", () => {
  it("refuses runtimeProvider agentcore with a 400 naming what is missing", async () => {
    const user = await newUser("agentcore-missing");
    const created = await api("POST", "/v1/agents", { user, body: { name: "no-agentcore" } });
    const { agent } = (await created.json()) as { agent: { id: string } };
    const res = await api("POST", `/v1/agents/${agent.id}/deploy`, { user, body: { runtimeProvider: "agentcore" } });
    const problem = await expectProblem(res, 400, "unsupported_runtime_provider");
    expect(problem.detail).toContain("AGENTCORE_REGION");
    expect(problem.detail).toContain("AWS_SECRET_ACCESS_KEY");
  });
});
