// Direct D1 fixtures for what other slices own (users, deployments) and tier changes, so these
// tests do not depend on the deploy path.
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { createDb, type Db } from "../../src/db/client";
import { agents, deploymentArtifacts, deployments, users } from "../../src/db/schema";
import { newId } from "../../src/lib/ids";
import type { Tier } from "../../src/services/usage/tiers";
import { setUserTier } from "../../src/services/usage/user-tier";
import { call } from "./http";

export const db: Db = createDb(env.DB);

/** The user id behind a test user's token (creating the user row with one authenticated call). */
export async function userIdOf(user: { subject: string; headers: Record<string, string> }): Promise<string> {
  const res = await call("GET", "/v1/agents?limit=1", { headers: user.headers });
  if (res.status !== 200) throw new Error(`could not create user row: ${res.status}`);
  const row = await db.select({ id: users.id }).from(users).where(eq(users.authSubject, user.subject)).get();
  if (!row) throw new Error("user row missing");
  return row.id;
}

/** Moves a test user to a tier (before their first tier lookup, so no cache is involved). */
export async function setTierOf(user: { subject: string; headers: Record<string, string> }, tier: Tier) {
  const userId = await userIdOf(user);
  await setUserTier(db, { userId, tier, actor: "operator:test" });
  return userId;
}

/** A user and agent row straight in D1 (no HTTP). */
export async function insertUserAndAgent(): Promise<{ userId: string; agentId: string }> {
  const now = Date.now();
  const userId = newId("user", now);
  const agentId = newId("agent", now);
  await db.insert(users).values({ id: userId, authSubject: `fixture-${userId}`, createdAt: now, updatedAt: now });
  await db.insert(agents).values({ id: agentId, userId, name: `fixture-${agentId}`, createdAt: now, updatedAt: now });
  return { userId, agentId };
}

/** A deployment row with the given ciphertexts and creation time. */
export async function insertDeployment(input: {
  userId: string;
  agentId: string;
  createdAt?: number;
  telemetrySecretCiphertext?: string;
  secretsSnapshotCiphertext?: string | null;
  id?: string;
}): Promise<string> {
  const createdAt = input.createdAt ?? Date.now();
  const id = input.id ?? newId("deployment", createdAt);
  const artifactId = newId("artifact", createdAt);
  await db.insert(deploymentArtifacts).values({
    id: artifactId,
    userId: input.userId,
    sha256: artifactId,
    moduleCode: "export default {}",
    sizeBytes: 17,
    createdAt,
  });
  await db.insert(deployments).values({
    id,
    userId: input.userId,
    agentId: input.agentId,
    status: "failed",
    runtimeProvider: "cloudflare",
    compatibilityDate: "2026-08-01",
    invokePath: "/invoke",
    mainModuleName: "index.mjs",
    artifactId,
    moduleSha256: artifactId,
    telemetrySecretCiphertext: input.telemetrySecretCiphertext ?? "v1.000000000000.AAAA.AAAA",
    secretsSnapshotCiphertext: input.secretsSnapshotCiphertext ?? null,
    scriptName: `webhost-${id}`,
    createdAt,
    updatedAt: createdAt,
  });
  return id;
}
