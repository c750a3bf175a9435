// The authorization matrix, kept as data: every route the app serves × every kind of caller →
// the status the caller must get. tests/authorization-matrix.test.ts runs it against real seeded
// objects (an agent with an active and an earlier deployment, a secret) and fails when a served
// route has no row here, or a row names a route the app no longer serves.
//
// Rows are in the order the owner runs them: reads first, destructive calls (delete a secret,
// disable, delete the agent) last. The other callers run every row before the owner and must
// leave the world exactly as it was.
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { telemetrySecretAad } from "../../src/crypto/aad";
import { decryptSecret } from "../../src/crypto/envelope";
import { getConfig } from "../../src/env";
import * as modules from "../fixtures/modules";
import { newUser } from "./auth";
import { createAgent, deployAndActivate, userIdOf } from "./deploy-flow";
import { signTelemetry } from "./deployments";
import { call } from "./http";

export const ACTORS = ["otherUser", "anonymous", "malformedToken", "owner"] as const;
export type Actor = (typeof ACTORS)[number];

/** What the rows may use: the owner's objects, made before the matrix runs. */
export type World = {
  userId: string;
  agentId: string;
  activeDeploymentId: string;
  /** Active before the current one, so it can be activated again (rollback). */
  previousDeploymentId: string;
  secretName: string;
  /** The raw telemetry key of the active deployment (what its worker signs with). */
  telemetrySecret: Uint8Array;
};

export type MatrixRequest = { path: string; body?: unknown; rawBody?: string; headers?: Record<string, string> };

export type MatrixRow = {
  /** "METHOD /path/{param}", exactly as servedRoutes() names it. */
  route: string;
  /** Tells rows of the same route apart. */
  variant?: string;
  request: (w: World) => MatrixRequest | Promise<MatrixRequest>;
  expect: Record<Actor, number>;
};

/** An object of the owner's: others must not learn it exists. */
const ownedObject = (owner: number): Record<Actor, number> => ({
  owner,
  otherUser: 404,
  anonymous: 401,
  malformedToken: 401,
});
/** Acts on the caller's own data (their list, their usage): any signed-in user gets the same status. */
const callerScoped = (status: number): Record<Actor, number> => ({
  owner: status,
  otherUser: status,
  anonymous: 401,
  malformedToken: 401,
});
/** Needs no bearer token, and an invalid one changes nothing. */
const publicRoute = (status: number): Record<Actor, number> => ({
  owner: status,
  otherUser: status,
  anonymous: status,
  malformedToken: status,
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

export const AUTHZ_MATRIX: MatrixRow[] = [
  { route: "GET /healthz", request: () => ({ path: "/healthz" }), expect: publicRoute(200) },
  { route: "GET /openapi.json", request: () => ({ path: "/openapi.json" }), expect: publicRoute(200) },
  { route: "GET /docs", request: () => ({ path: "/docs" }), expect: publicRoute(200) },
  { route: "GET /v1/agents", request: () => ({ path: "/v1/agents" }), expect: callerScoped(200) },
  {
    route: "POST /v1/agents",
    request: () => ({ path: "/v1/agents", body: { name: `matrix-${crypto.randomUUID().slice(0, 8)}` } }),
    expect: callerScoped(201),
  },
  {
    route: "GET /v1/agents/{agentId}",
    request: (w) => ({ path: `/v1/agents/${w.agentId}` }),
    expect: ownedObject(200),
  },
  {
    route: "PATCH /v1/agents/{agentId}",
    request: (w) => ({ path: `/v1/agents/${w.agentId}`, body: { description: "changed by the matrix" } }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/deployments",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deployments` }),
    expect: ownedObject(200),
  },
  {
    route: "GET /v1/agents/{agentId}/deployments/{deploymentId}",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deployments/${w.activeDeploymentId}` }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/invoke/{agentId}",
    request: (w) => ({ path: `/v1/invoke/${w.agentId}`, body: invokeBody }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/invoke/{agentId}/stream",
    request: (w) => ({ path: `/v1/invoke/${w.agentId}/stream`, body: invokeBody }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/telemetry/report",
    variant: "correctly signed",
    request: (w) => telemetryReport(w, true),
    expect: publicRoute(200),
  },
  {
    route: "POST /v1/telemetry/report",
    variant: "wrong signature",
    request: (w) => telemetryReport(w, false),
    expect: publicRoute(401),
  },
  {
    route: "GET /v1/metrics/recent",
    request: (w) => ({ path: `/v1/metrics/recent?agentId=${w.agentId}` }),
    expect: ownedObject(200),
  },
  { route: "GET /v1/usage/current", request: () => ({ path: "/v1/usage/current" }), expect: callerScoped(200) },
  { route: "GET /v1/usage", request: () => ({ path: "/v1/usage?period=2026-01" }), expect: callerScoped(200) },
  { route: "GET /v1/audit", request: () => ({ path: "/v1/audit" }), expect: callerScoped(200) },
  {
    route: "GET /v1/agents/{agentId}/secrets",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/secrets` }),
    expect: ownedObject(200),
  },
  {
    route: "PUT /v1/agents/{agentId}/secrets/{name}",
    request: (w) => ({
      path: `/v1/agents/${w.agentId}/secrets/${w.secretName}`,
      body: { value: "replaced-by-matrix" },
    }),
    expect: ownedObject(200),
  },
  {
    route: "POST /v1/agents/{agentId}/deploy",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deploy`, body: {} }),
    expect: ownedObject(202),
  },
  {
    route: "POST /v1/agents/{agentId}/deployments/{deploymentId}/activate",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/deployments/${w.previousDeploymentId}/activate` }),
    expect: ownedObject(200),
  },
  {
    route: "DELETE /v1/agents/{agentId}/secrets/{name}",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/secrets/${w.secretName}` }),
    expect: ownedObject(204),
  },
  {
    route: "POST /v1/agents/{agentId}/disable",
    request: (w) => ({ path: `/v1/agents/${w.agentId}/disable` }),
    expect: ownedObject(200),
  },
  {
    route: "DELETE /v1/agents/{agentId}",
    request: (w) => ({ path: `/v1/agents/${w.agentId}` }),
    expect: ownedObject(204),
  },
];

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
  // The other user exists (has a user row) before the matrix runs, like any real second tenant.
  expect((await call("GET", "/v1/agents", { headers: other.headers })).status).toBe(200);
  return {
    world: {
      userId: await userIdOf(owner.subject),
      agentId: agent.id,
      activeDeploymentId: active.id,
      previousDeploymentId: previous.id,
      secretName,
      telemetrySecret,
    },
    headers: {
      owner: owner.headers,
      otherUser: other.headers,
      anonymous: {},
      malformedToken: { authorization: "Bearer not-a-jwt" },
    },
  };
}
