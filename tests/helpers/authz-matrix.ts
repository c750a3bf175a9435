// The authorization matrix, kept as data: every route the app serves × every kind of caller →
// the status the caller must get. tests/authorization-matrix.test.ts runs it against real seeded
// objects (an agent with an active and an earlier deployment, a secret) and fails when a served
// route has no row here, or a row names a route the app no longer serves.
//
// Rows are in the order the owner runs them: reads first, destructive calls (delete a secret,
// disable, delete the agent) last. The other callers run every row before the owner and must
// leave the world exactly as it was.
//
// API-key callers: `keyReadOnly` is the owner's key with only `agents:read` (the right scope for
// reads, the wrong one for everything else); `keyOtherAgent` is the owner's key with every scope
// but restricted to another agent of the owner's (the world's agent is "not found" to it). Their
// expectations follow from each row's declared `scope` (keyExpectations below).
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { API_KEY_SCOPES, type RouteScope } from "../../src/auth/principal";
import { telemetrySecretAad } from "../../src/crypto/aad";
import { decryptSecret } from "../../src/crypto/envelope";
import { getConfig } from "../../src/env";
import * as modules from "../fixtures/modules";
import { createApiKeyFor } from "./api-keys";
import { newUser } from "./auth";
import { createAgent, deployAndActivate, userIdOf } from "./deploy-flow";
import { signTelemetry } from "./deployments";
import { call } from "./http";

export const ACTORS = ["otherUser", "anonymous", "malformedToken", "keyReadOnly", "keyOtherAgent", "owner"] as const;
export type Actor = (typeof ACTORS)[number];
type BaseActor = Exclude<Actor, "keyReadOnly" | "keyOtherAgent">;
export const KEY_ACTORS: readonly Actor[] = ["keyReadOnly", "keyOtherAgent"];

/** What the rows may use: the owner's objects, made before the matrix runs. */
export type World = {
  userId: string;
  agentId: string;
  activeDeploymentId: string;
  /** Active before the current one, so it can be activated again (rollback). */
  previousDeploymentId: string;
  /** A running rollout of the previous deployment (50%). */
  rolloutId: string;
  secretName: string;
  /** The raw telemetry key of the active deployment (what its worker signs with). */
  telemetrySecret: Uint8Array;
  /** An API key of the owner's that only the owner's DELETE row revokes. */
  spareKeyId: string;
  /** A run of the owner's agent that has ended (so cancelling it is 409 for the owner). */
  runId: string;
  /** A session of the owner's agent (only the owner's DELETE row ends it). */
  sessionId: string;
  /** A webhook endpoint of the owner's (only the owner's DELETE row removes it). */
  webhookId: string;
};

export type MatrixRequest = { path: string; body?: unknown; rawBody?: string; headers?: Record<string, string> };

type RowSpec = {
  /** "METHOD /path/{param}", exactly as servedRoutes() names it. */
  route: string;
  /** Tells rows of the same route apart. */
  variant?: string;
  /** The API-key scope the route declares (none: a public route). */
  scope?: RouteScope;
  request: (w: World) => MatrixRequest | Promise<MatrixRequest>;
  expect: Record<BaseActor, number>;
};
export type MatrixRow = Omit<RowSpec, "expect"> & { expect: Record<Actor, number> };

/** An object of the owner's: others must not learn it exists. */
const ownedObject = (owner: number): Record<BaseActor, number> => ({
  owner,
  otherUser: 404,
  anonymous: 401,
  malformedToken: 401,
});
/** Acts on the caller's own data (their list, their usage): any signed-in user gets the same status. */
const callerScoped = (status: number): Record<BaseActor, number> => ({
  owner: status,
  otherUser: status,
  anonymous: 401,
  malformedToken: 401,
});
/** Needs no bearer token, and an invalid one changes nothing. */
const publicRoute = (status: number): Record<BaseActor, number> => ({
  owner: status,
  otherUser: status,
  anonymous: status,
  malformedToken: status,
});

const rolloutBody = (w: World) => ({
  deploymentId: w.previousDeploymentId,
  stages: [{ percent: 50, minDurationSeconds: 60 }],
  abortOn: { maxErrorRatePct: 50, minRequests: 10 },
});

const invokeBody = { messages: [{ role: "user", content: "matrix" }] };

async function telemetryReport(w: World, sign: boolean): Promise<MatrixRequest> {
  const rawBody = JSON.stringify({
    eventId: `matrix-${crypto.randomUUID()}`,
    userId: w.userId,
    agentId: w.agentId,
    deploymentId: w.activeDeploymentId,
    runtimeProvider: "cloudflare",
    kind: "invoke",
    ts: Date.now(),
    status: "ok",
  });
  const signature = sign ? await signTelemetry(w.telemetrySecret, rawBody) : `v1=${"0".repeat(64)}`;
  return {
    path: "/v1/telemetry/report",
    rawBody,
    headers: {
      "content-type": "application/json",
      "x-telemetry-signature": signature,
      "x-telemetry-deployment-id": w.activeDeploymentId,
    },
  };
}

const ROWS: RowSpec[] = [
  { route: "GET /healthz", request: () => ({ path: "/healthz" }), expect: publicRoute(200) },
  { route: "GET /openapi.json", request: () => ({ path: "/openapi.json" }), expect: publicRoute(200) },
  { route: "GET /docs", request: () => ({ path: "/docs" }), expect: publicRoute(200) },
  // The dashboard's files hold no data (it reads everything from /v1 with the user's credential).
  // `/` and `/dashboard` redirect to `/dashboard/`; the test client follows redirects.
  { route: "GET /", request: () => ({ path: "/" }), expect: publicRoute(200) },
  { route: "GET /dashboard", request: () => ({ path: "/dashboard" }), expect: publicRoute(200) },
  { route: "GET /dashboard/", request: () => ({ path: "/dashboard/" }), expect: publicRoute(200) },
  { route: "GET /dashboard/app.js", request: () => ({ path: "/dashboard/app.js" }), expect: publicRoute(200) },
  { route: "GET /dashboard/app.css", request: () => ({ path: "/dashboard/app.css" }), expect: publicRoute(200) },
  { route: "GET /v1/agents", scope: "agents:read", request: () => ({ path: "/v1/agents" }), expect: callerScoped(200) },
  {
    route: "POST /v1/agents",
    scope: "agents:write",
    request: () => ({ path: "/v1/agents", body: { name: `matrix-${crypto.randomUUID().slice(0, 8)}` } }),
    expect: callerScoped(201),
  },
  {
    route: "GET /v1/agents/{agentId}",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}` }),
    expect: ownedObject(200),
  },
  {
    route: "PATCH /v1/agents/{agentId}",
    scope: "agents:write",
    request: (w) => ({ path: `/v1/agents/${w.agentId}`, body: { description: "changed by the matrix" } }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/deployments",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deployments` }),
    expect: ownedObject(200),
  },
  {
    // The follow stream (?follow=1) never ends for its owner, so the matrix reads the page; a
    // stranger's 404 on the stream is in tests/logs.test.ts.
    route: "GET /v1/agents/{agentId}/logs",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/logs` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/deployments/{deploymentId}",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deployments/${w.activeDeploymentId}` }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/invoke/{agentId}",
    scope: "invoke",
    request: (w) => ({ path: `/v1/invoke/${w.agentId}`, body: invokeBody }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/invoke/{agentId}/stream",
    scope: "invoke",
    request: (w) => ({ path: `/v1/invoke/${w.agentId}/stream`, body: invokeBody }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/agents/{agentId}/runs",
    scope: "invoke",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/runs`, body: invokeBody }),
    expect: ownedObject(202),
  },
  {
    route: "GET /v1/runs/{runId}",
    scope: "invoke",
    request: (w) => ({ path: `/v1/runs/${w.runId}` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/runs/{runId}/events",
    scope: "invoke",
    request: (w) => ({ path: `/v1/runs/${w.runId}/events` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/runs/{runId}/wait",
    scope: "invoke",
    request: (w) => ({ path: `/v1/runs/${w.runId}/wait?timeoutSeconds=0` }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/runs/{runId}/cancel",
    scope: "invoke",
    request: (w) => ({ path: `/v1/runs/${w.runId}/cancel` }),
    expect: ownedObject(409),
  },
  {
    route: "POST /v1/agents/{agentId}/sessions",
    scope: "invoke",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/sessions` }),
    expect: ownedObject(201),
  },
  {
    route: "GET /v1/agents/{agentId}/sessions/{sessionId}",
    scope: "invoke",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/sessions/${w.sessionId}` }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/telemetry/report",
    variant: "correctly signed",
    request: (w) => telemetryReport(w, true),
    expect: publicRoute(202),
  },
  {
    route: "POST /v1/telemetry/report",
    variant: "wrong signature",
    request: (w) => telemetryReport(w, false),
    expect: publicRoute(401),
  },
  {
    route: "GET /v1/metrics/recent",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/metrics/recent?agentId=${w.agentId}` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/usage/current",
    scope: "usage:read",
    request: () => ({ path: "/v1/usage/current" }),
    expect: callerScoped(200),
  },
  {
    route: "GET /v1/usage",
    scope: "usage:read",
    request: () => ({ path: "/v1/usage?period=2026-01" }),
    expect: callerScoped(200),
  },
  { route: "GET /v1/audit", scope: "jwt", request: () => ({ path: "/v1/audit" }), expect: callerScoped(200) },
  { route: "GET /v1/api-keys", scope: "jwt", request: () => ({ path: "/v1/api-keys" }), expect: callerScoped(200) },
  {
    route: "POST /v1/api-keys",
    scope: "jwt",
    request: () => ({ path: "/v1/api-keys", body: { name: "matrix", scopes: ["invoke"] } }),
    expect: callerScoped(201),
  },
  { route: "GET /v1/webhooks", scope: "jwt", request: () => ({ path: "/v1/webhooks" }), expect: callerScoped(200) },
  {
    route: "POST /v1/webhooks",
    scope: "jwt",
    request: () => ({ path: "/v1/webhooks", body: { url: "http://127.0.0.1:9/matrix", events: ["usage.threshold"] } }),
    expect: callerScoped(201),
  },
  {
    route: "GET /v1/webhooks/{webhookId}",
    scope: "jwt",
    request: (w) => ({ path: `/v1/webhooks/${w.webhookId}` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/webhooks/{webhookId}/deliveries",
    scope: "jwt",
    request: (w) => ({ path: `/v1/webhooks/${w.webhookId}/deliveries` }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/webhooks/{webhookId}/test",
    scope: "jwt",
    request: (w) => ({ path: `/v1/webhooks/${w.webhookId}/test` }),
    expect: ownedObject(202),
  },
  {
    route: "POST /v1/webhooks/{webhookId}/rotate-secret",
    scope: "jwt",
    request: (w) => ({ path: `/v1/webhooks/${w.webhookId}/rotate-secret` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/secrets",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/secrets` }),
    expect: ownedObject(200),
  },
  {
    route: "PUT /v1/agents/{agentId}/secrets/{name}",
    scope: "secrets:write",
    request: (w) => ({
      path: `/v1/agents/${w.agentId}/secrets/${w.secretName}`,
      body: { value: "replaced-by-matrix" },
    }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/egress",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/egress` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/stats",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/stats?window=7d` }),
    expect: ownedObject(200),
  },
  {
    route: "PUT /v1/agents/{agentId}/egress",
    scope: "agents:write",
    request: (w) => ({
      path: `/v1/agents/${w.agentId}/egress`,
      body: { mode: "allowlist", allow: ["api.example.com"] },
    }),
    expect: ownedObject(200),
  },
  {
    // The world's rollout is running: the owner's second one is refused.
    route: "POST /v1/agents/{agentId}/rollouts",
    scope: "deploy",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/rollouts`, body: rolloutBody(w) }),
    expect: ownedObject(409),
  },
  {
    route: "GET /v1/agents/{agentId}/rollouts",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/rollouts` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/rollouts/{rolloutId}",
    scope: "agents:read",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/rollouts/${w.rolloutId}` }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/agents/{agentId}/rollouts/{rolloutId}/abort",
    scope: "deploy",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/rollouts/${w.rolloutId}/abort` }),
    expect: ownedObject(200),
  },
  {
    // After the owner's abort above, the rollout has ended.
    route: "POST /v1/agents/{agentId}/rollouts/{rolloutId}/promote",
    scope: "deploy",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/rollouts/${w.rolloutId}/promote` }),
    expect: ownedObject(409),
  },
  {
    route: "POST /v1/agents/{agentId}/deploy",
    scope: "deploy",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deploy`, body: {} }),
    expect: ownedObject(202),
  },
  {
    route: "POST /v1/agents/{agentId}/deployments/{deploymentId}/activate",
    scope: "deploy",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deployments/${w.previousDeploymentId}/activate` }),
    expect: ownedObject(200),
  },
  {
    route: "DELETE /v1/agents/{agentId}/secrets/{name}",
    scope: "secrets:write",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/secrets/${w.secretName}` }),
    expect: ownedObject(204),
  },
  {
    route: "DELETE /v1/agents/{agentId}/sessions/{sessionId}",
    scope: "invoke",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/sessions/${w.sessionId}` }),
    expect: ownedObject(204),
  },
  {
    route: "DELETE /v1/webhooks/{webhookId}",
    scope: "jwt",
    request: (w) => ({ path: `/v1/webhooks/${w.webhookId}` }),
    expect: ownedObject(204),
  },
  {
    route: "DELETE /v1/api-keys/{keyId}",
    scope: "jwt",
    request: (w) => ({ path: `/v1/api-keys/${w.spareKeyId}` }),
    expect: ownedObject(204),
  },
  {
    route: "POST /v1/agents/{agentId}/disable",
    scope: "agents:write",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/disable` }),
    expect: ownedObject(200),
  },
  {
    route: "DELETE /v1/agents/{agentId}",
    scope: "agents:write",
    request: (w) => ({ path: `/v1/agents/${w.agentId}` }),
    expect: ownedObject(204),
  },
];

/**
 * What the owner's two API keys get on a row: a public route answers them as anyone; a JWT-only
 * route is 403; `keyReadOnly` gets the owner's answer where `agents:read` is the scope, else 403;
 * `keyOtherAgent` (every scope, another agent) gets 404 for the owner's objects, 403 for creating
 * an agent (a restricted key cannot) and the owner's answer on the caller's own data.
 */
function keyExpectations(row: RowSpec): Record<"keyReadOnly" | "keyOtherAgent", number> {
  if (!row.scope) return { keyReadOnly: row.expect.anonymous, keyOtherAgent: row.expect.anonymous };
  if (row.scope === "jwt") return { keyReadOnly: 403, keyOtherAgent: 403 };
  const keyReadOnly = row.scope === "agents:read" ? row.expect.owner : 403;
  if (row.expect.otherUser === 404) return { keyReadOnly, keyOtherAgent: 404 };
  return { keyReadOnly, keyOtherAgent: row.route === "POST /v1/agents" ? 403 : row.expect.owner };
}

export const AUTHZ_MATRIX: MatrixRow[] = ROWS.map((row) => ({
  ...row,
  expect: { ...row.expect, ...keyExpectations(row) },
}));

/** "PATCH /v1/agents/{agentId}" → "PATCH". */
export function methodOf(row: MatrixRow): string {
  return row.route.split(" ")[0]!;
}

/** The owner's objects (two deployments, the later one active; a secret) and each actor's headers. */
export async function makeMatrixWorld(): Promise<{ world: World; headers: Record<Actor, Record<string, string>> }> {
  const owner = await newUser("owner");
  const other = await newUser("other");
  const agent = await createAgent(owner.headers);
  const previous = await deployAndActivate(owner.headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
  const active = await deployAndActivate(owner.headers, agent.id, { moduleCode: modules.fixedAnswer("v2") });
  const secretName = `MATRIX_${crypto.randomUUID().slice(0, 8).toUpperCase().replaceAll("-", "_")}`;
  const put = await call("PUT", `/v1/agents/${agent.id}/secrets/${secretName}`, {
    headers: owner.headers,
    body: { value: `matrix-secret-${crypto.randomUUID()}` },
  });
  expect(put.status).toBe(201);
  const row = await env.DB.prepare("SELECT telemetry_secret_ciphertext AS c FROM deployments WHERE id = ?")
    .bind(active.id)
    .first<{ c: string }>();
  const { keyring } = await getConfig(env);
  const telemetrySecret = await decryptSecret(keyring, row!.c, telemetrySecretAad(active.id));
  // The owner's API keys: read-only; every scope but only for another agent; a spare one to revoke.
  const otherAgent = await createAgent(owner.headers);
  const keyReadOnly = await createApiKeyFor(owner.headers, { name: "read-only", scopes: ["agents:read"] });
  const keyOtherAgent = await createApiKeyFor(owner.headers, {
    name: "other-agent",
    scopes: [...API_KEY_SCOPES],
    agentIds: [otherAgent.id],
  });
  const spare = await createApiKeyFor(owner.headers, { name: "spare", scopes: ["invoke"] });
  const started = await call("POST", `/v1/agents/${agent.id}/runs`, {
    headers: owner.headers,
    body: { messages: [{ role: "user", content: "matrix" }] },
  });
  expect(started.status).toBe(202);
  const runId = ((await started.json()) as { run: { id: string } }).run.id;
  const waited = await call("GET", `/v1/runs/${runId}/wait?timeoutSeconds=20`, { headers: owner.headers });
  expect(waited.status).toBe(200);
  const session = await call("POST", `/v1/agents/${agent.id}/sessions`, { headers: owner.headers });
  expect(session.status).toBe(201);
  const sessionId = ((await session.json()) as { session: { id: string } }).session.id;
  const webhook = await call("POST", "/v1/webhooks", {
    headers: owner.headers,
    body: { url: "http://127.0.0.1:9/matrix-world", events: ["usage.threshold"] },
  });
  expect(webhook.status).toBe(201);
  const webhookId = ((await webhook.json()) as { webhook: { id: string } }).webhook.id;
  const rollout = await call("POST", `/v1/agents/${agent.id}/rollouts`, {
    headers: owner.headers,
    body: rolloutBody({ previousDeploymentId: previous.id } as World),
  });
  expect(rollout.status).toBe(201);
  const rolloutId = ((await rollout.json()) as { rollout: { id: string } }).rollout.id;
  // The other user exists (has a user row) before the matrix runs, like any real second tenant.
  expect((await call("GET", "/v1/agents", { headers: other.headers })).status).toBe(200);
  return {
    world: {
      userId: await userIdOf(owner.subject),
      agentId: agent.id,
      activeDeploymentId: active.id,
      previousDeploymentId: previous.id,
      rolloutId,
      secretName,
      telemetrySecret,
      spareKeyId: spare.id,
      runId,
      sessionId,
      webhookId,
    },
    headers: {
      owner: owner.headers,
      otherUser: other.headers,
      anonymous: {},
      malformedToken: { authorization: "Bearer not-a-jwt" },
      keyReadOnly: { authorization: `Bearer ${keyReadOnly.key}` },
      keyOtherAgent: { authorization: `Bearer ${keyOtherAgent.key}` },
    },
  };
}
