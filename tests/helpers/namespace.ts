// A namespace runtime wired to the fake Cloudflare API and a fake dispatcher, plus D1 seeding for
// the cleanup tests. The fakes sit exactly where production talks to things we cannot run here:
// the Cloudflare REST API (an injected fetch) and the DISPATCHER binding.
import { env } from "cloudflare:workers";
import { createFakeCloudflareApi, type FakeCloudflareApi } from "../../scripts/lib/fake-cloudflare-api.ts";
import { createDb, type Db } from "../../src/db/client";
import { agents, deploymentArtifacts, deployments, users } from "../../src/db/schema";
import { newId } from "../../src/lib/ids";
import {
  createNamespaceRuntime,
  type DispatcherLike,
  type NamespaceRuntime,
  type NamespaceRuntimeEnv,
} from "../../src/runtime/namespace/provider";
import type { DeploymentBundle } from "../../src/runtime/types";
import { scriptNameFor } from "../../src/runtime/user-script";

export const ACCOUNT_ID = "0123456789abcdef0123456789abcdef";
export const NAMESPACE = "webhost-agents";
export const API_TOKEN = `cf-token-${crypto.randomUUID()}`;

export function namespaceEnv(overrides: Partial<NamespaceRuntimeEnv> = {}): NamespaceRuntimeEnv {
  return {
    CLOUDFLARE_API_BASE_URL: "https://api.cloudflare.test/client/v4",
    CLOUDFLARE_ACCOUNT_ID: ACCOUNT_ID,
    CLOUDFLARE_API_TOKEN: API_TOKEN,
    DISPATCH_NAMESPACE: NAMESPACE,
    GATEWAY_SERVICE_NAME: "webhost-gateway",
    ...overrides,
  };
}

/** The gateway's default INVOKE_TIMEOUT_MS (src/env.ts). */
export const INVOKE_TIMEOUT_MS = 30_000;

export function namespaceSetup(
  opts: {
    env?: Partial<NamespaceRuntimeEnv>;
    invokeTimeoutMs?: number;
    dispatcher?: DispatcherLike;
    deletePageSize?: number;
  } = {},
): { api: FakeCloudflareApi; runtime: NamespaceRuntime } {
  const api = createFakeCloudflareApi({
    accountId: ACCOUNT_ID,
    apiToken: API_TOKEN,
    namespace: NAMESPACE,
    deletePageSize: opts.deletePageSize,
  });
  const runtime = createNamespaceRuntime({
    env: namespaceEnv(opts.env),
    invokeTimeoutMs: opts.invokeTimeoutMs ?? INVOKE_TIMEOUT_MS,
    fetch: api.fetch,
    dispatcher: opts.dispatcher,
  });
  return { api, runtime };
}

export const USER_MODULE = `export default { async fetch(request, env) { return Response.json({ output: { text: "hi" } }); } };`;

export function makeBundle(overrides: Partial<DeploymentBundle> = {}): DeploymentBundle {
  const deploymentId = overrides.deploymentId ?? newId("deployment");
  return {
    deploymentId,
    userId: newId("user"),
    agentId: newId("agent"),
    scriptName: scriptNameFor(deploymentId),
    runtimeProvider: "cloudflare",
    mainModuleName: "index.mjs",
    modules: [{ name: "index.mjs", type: "esm", content: USER_MODULE }],
    compatibilityDate: "2026-08-01",
    compatibilityFlags: [],
    telemetrySecret: "dGVsZW1ldHJ5LXNlY3JldC10ZWxlbWV0cnktc2VjcmV0",
    secrets: { OPENAI_API_KEY: `sk-live-${crypto.randomUUID()}`, WEBHOOK_TOKEN: `whk-${crypto.randomUUID()}` },
    ...overrides,
  };
}

/** A dispatcher that records each get() and answers with `respond`. */
export function fakeDispatcher(respond: (name: string, request: Request) => Promise<Response>): DispatcherLike & {
  calls: Array<{ name: string; args: unknown; options: unknown }>;
} {
  const calls: Array<{ name: string; args: unknown; options: unknown }> = [];
  return {
    calls,
    get(name, args, options) {
      calls.push({ name, args, options });
      return { fetch: (request: Request) => respond(name, request) };
    },
  };
}

export function testDb(): Db {
  return createDb(env.DB);
}

/** A user and an agent (optionally deleted) in D1. */
export async function seedAgent(db: Db, opts: { deleted?: boolean } = {}) {
  const now = Date.now();
  const userId = newId("user");
  const agentId = newId("agent");
  await db.insert(users).values({ id: userId, authSubject: `sub-${userId}`, createdAt: now, updatedAt: now });
  await db.insert(agents).values({
    id: agentId,
    userId,
    name: `agent-${agentId}`,
    status: "active",
    createdAt: now,
    updatedAt: now,
    deletedAt: opts.deleted ? now : null,
  });
  const artifactId = newId("artifact");
  await db.insert(deploymentArtifacts).values({
    id: artifactId,
    userId,
    sha256: `sha-${artifactId}`,
    moduleCode: USER_MODULE,
    sizeBytes: USER_MODULE.length,
    createdAt: now,
  });
  return { userId, agentId, artifactId };
}

/** A deployment row; `at` orders them (created, activated and updated at that time). */
export async function seedDeployment(
  db: Db,
  seed: { userId: string; agentId: string; artifactId: string },
  row: { status: "deploying" | "ready" | "active" | "inactive" | "failed"; at: number; activatedAt?: number | null },
) {
  const id = newId("deployment", row.at);
  await db.insert(deployments).values({
    id,
    userId: seed.userId,
    agentId: seed.agentId,
    status: row.status,
    runtimeProvider: "cloudflare",
    compatibilityDate: "2026-08-01",
    invokePath: "/invoke",
    mainModuleName: "index.mjs",
    artifactId: seed.artifactId,
    moduleSha256: `sha-${seed.artifactId}`,
    telemetrySecretCiphertext: "v1.test.ciphertext",
    scriptName: scriptNameFor(id),
    activatedAt: row.activatedAt === undefined ? (row.status === "failed" ? null : row.at) : row.activatedAt,
    createdAt: row.at,
    updatedAt: row.at,
  });
  return { id, scriptName: scriptNameFor(id) };
}
