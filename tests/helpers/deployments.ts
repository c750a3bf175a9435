// Deployment rows made directly in D1 (user, agent, artifact, deployment with an encrypted
// telemetry secret), for tests that need a deployment without going through the deploy route.
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { telemetrySecretAad } from "../../src/crypto/aad";
import { sha256Hex, toBase64Url, utf8 } from "../../src/crypto/encoding";
import { encryptSecret } from "../../src/crypto/envelope";
import { signHmacHex } from "../../src/crypto/hmac";
import { createDb } from "../../src/db/client";
import { agents, deploymentArtifacts, deployments } from "../../src/db/schema";
import { getConfig } from "../../src/env";
import { newId } from "../../src/lib/ids";
import { scriptNameFor } from "../../src/runtime/user-script";
import { recordEvents } from "../../src/services/metering/record-events";
import { newUser } from "./auth";
import { call } from "./http";

export type Owner = { headers: Record<string, string> };

export type SeededDeployment = {
  owner: Owner;
  userId: string;
  agentId: string;
  deploymentId: string;
  /** The 32 raw key bytes. */
  secret: Uint8Array;
  /** What the worker receives as TELEMETRY_SECRET. */
  secretBase64Url: string;
};

/** An agent created through the API (so the user row exists), and its user id read back from D1. */
export async function seedAgent(owner: Owner): Promise<{ userId: string; agentId: string }> {
  const res = await call("POST", "/v1/agents", {
    headers: owner.headers,
    body: { name: `agent-${crypto.randomUUID().slice(0, 8)}` },
  });
  if (res.status !== 201) throw new Error(`creating an agent failed: ${res.status} ${await res.text()}`);
  const agentId = ((await res.json()) as { agent: { id: string } }).agent.id;
  const row = await createDb(env.DB).select({ userId: agents.userId }).from(agents).where(eq(agents.id, agentId)).get();
  if (!row) throw new Error("agent row missing");
  return { userId: row.userId, agentId };
}

/** A deployment of a (new, unless given) agent of `owner` (a fresh user unless given), made active. */
export async function seedDeployment(
  opts: { owner?: Owner; agentId?: string; deploymentId?: string; plaintext?: "raw" | "base64url" } = {},
): Promise<SeededDeployment> {
  const owner = opts.owner ?? (await newUser());
  const { userId, agentId } = opts.agentId
    ? await createDb(env.DB)
        .select({ userId: agents.userId, agentId: agents.id })
        .from(agents)
        .where(eq(agents.id, opts.agentId))
        .get()
        .then((r) => r ?? Promise.reject(new Error("agent missing")))
    : await seedAgent(owner);
  const db = createDb(env.DB);
  const { keyring } = await getConfig(env);
  const now = Date.now();
  const deploymentId = opts.deploymentId ?? newId("deployment", now);
  const artifactId = newId("artifact", now);
  const moduleCode = `export default { fetch() { return new Response("${deploymentId}"); } };`;
  const sha = await sha256Hex(moduleCode);
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const secretBase64Url = toBase64Url(secret);
  const sealed = await encryptSecret(
    keyring,
    opts.plaintext === "base64url" ? secretBase64Url : secret,
    telemetrySecretAad(deploymentId),
  );
  await db.batch([
    db
      .insert(deploymentArtifacts)
      .values({ id: artifactId, userId, sha256: sha, moduleCode, sizeBytes: moduleCode.length, createdAt: now }),
    db.update(deployments).set({ status: "inactive", updatedAt: now }).where(eq(deployments.agentId, agentId)),
    db.insert(deployments).values({
      id: deploymentId,
      userId,
      agentId,
      status: "active",
      runtimeProvider: "cloudflare",
      compatibilityDate: "2026-08-01",
      invokePath: "/invoke",
      mainModuleName: "index.mjs",
      artifactId,
      moduleSha256: sha,
      telemetrySecretCiphertext: sealed,
      scriptName: scriptNameFor(deploymentId),
      claimedAt: now,
      activatedAt: now,
      firstActivatedAt: now,
      createdAt: now,
      updatedAt: now,
    }),
    db.update(agents).set({ activeDeploymentId: deploymentId, updatedAt: now }).where(eq(agents.id, agentId)),
  ]);
  return { owner, userId, agentId, deploymentId, secret, secretBase64Url };
}

export async function signTelemetry(secret: Uint8Array, body: string | Uint8Array): Promise<string> {
  return `v1=${await signHmacHex(secret, typeof body === "string" ? utf8.encode(body) : body)}`;
}

let seq = 0;
/** A valid telemetry event of `dep`, with a fresh eventId unless overridden. */
export function telemetryEvent(
  dep: SeededDeployment,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    eventId: `evt-${Date.now()}-${++seq}-${crypto.randomUUID().slice(0, 8)}`,
    userId: dep.userId,
    agentId: dep.agentId,
    deploymentId: dep.deploymentId,
    runtimeProvider: "cloudflare",
    kind: "invoke",
    ts: Date.now(),
    durationMs: 12,
    status: "ok",
    usage: { inputTokens: 3, outputTokens: 5 },
    ...overrides,
  };
}

/** A gateway measurement of one invocation, as the invoke path records it (source 'gateway'). */
export async function insertGatewayEvent(
  dep: SeededDeployment,
  fields: {
    status: "ok" | "error";
    durationMs: number;
    bytesIn: number;
    bytesOut: number;
    streaming?: boolean;
    ts?: number;
  },
): Promise<void> {
  const now = Date.now();
  const id = newId("event", now);
  // Through the metering writer, as the invoke path records it: metrics_events + billing_usage.
  await recordEvents(createDb(env.DB), [
    {
      id,
      userId: dep.userId,
      agentId: dep.agentId,
      deploymentId: dep.deploymentId,
      source: "gateway",
      dedupeKey: id,
      eventId: null,
      traceId: id,
      runtimeProvider: "cloudflare",
      kind: "invoke",
      ts: fields.ts ?? now,
      durationMs: fields.durationMs,
      status: fields.status,
      errorCode: fields.status === "error" ? "upstream_exception" : null,
      inputTokens: null,
      outputTokens: null,
      bytesIn: fields.bytesIn,
      bytesOut: fields.bytesOut,
      streaming: fields.streaming ?? false,
      host: null,
      provider: null,
      model: null,
      receivedAt: now,
    },
  ]);
}
