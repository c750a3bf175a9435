// Create, list and revoke a user's API keys. The plain key leaves this module once, in the
// answer to create; the database holds its SHA-256. Create and revoke are audited in the same
// batch as the change.
import { and, desc, eq, inArray, isNull, sql } from "drizzle-orm";
import { apiKeyDisplayPrefix, generateApiKey, hashApiKey } from "../../auth/api-key-format";
import type { ApiKeyScope } from "../../auth/principal";
import { type ApiKeyRow, agents, apiKeys } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { isIdOf, newId } from "../../lib/ids";
import { recordAudit, userActor } from "../audit/audit";
import type { TenantDeps } from "../tenant";
import { forgetVerifiedApiKey } from "./verify";

export type { ApiKeyRow };

const DAY_MS = 24 * 60 * 60_000;
/** Live (not revoked) keys a user may hold at once. */
export const MAX_API_KEYS_PER_USER = 50;

export type CreateApiKeyInput = {
  name: string;
  scopes: ApiKeyScope[];
  agentIds?: string[];
  expiresInDays: number;
};

export async function createApiKey(
  { db, userId }: TenantDeps,
  input: CreateApiKeyInput,
  opts: { now?: number } = {},
): Promise<{ row: ApiKeyRow; key: string }> {
  const now = opts.now ?? Date.now();
  const agentIds = input.agentIds ? [...new Set(input.agentIds)] : null;
  if (agentIds) {
    const known = agentIds.every((id) => isIdOf("agent", id))
      ? await db
          .select({ id: agents.id })
          .from(agents)
          .where(and(eq(agents.userId, userId), isNull(agents.deletedAt), inArray(agents.id, agentIds)))
      : [];
    const found = new Set(known.map((r) => r.id));
    const missing = agentIds.filter((id) => !found.has(id));
    if (missing.length > 0) {
      throw new ApiError("validation_failed", "agentIds names agents you do not have", {
        errors: [{ location: "body.agentIds", message: `no such agent: ${missing.join(", ")}` }],
      });
    }
  }
  const [{ live } = { live: 0 }] = await db
    .select({ live: sql<number>`count(*)` })
    .from(apiKeys)
    .where(and(eq(apiKeys.userId, userId), isNull(apiKeys.revokedAt)));
  if (live >= MAX_API_KEYS_PER_USER) {
    throw new ApiError("forbidden", `you already hold ${MAX_API_KEYS_PER_USER} API keys; revoke one first`);
  }
  const key = generateApiKey();
  const row: ApiKeyRow = {
    id: newId("apiKey", now),
    userId,
    name: input.name,
    keyHash: await hashApiKey(key),
    prefix: apiKeyDisplayPrefix(key),
    scopes: [...new Set(input.scopes)],
    agentIds,
    createdAt: now,
    expiresAt: now + input.expiresInDays * DAY_MS,
    lastUsedAt: null,
    revokedAt: null,
  };
  await db.batch([
    db.insert(apiKeys).values(row),
    recordAudit(
      db,
      {
        userId,
        actor: userActor(userId),
        action: "api_key.created",
        targetType: "api_key",
        targetId: row.id,
        details: {
          name: row.name,
          scopes: row.scopes.join(" "),
          agentIds: agentIds ? agentIds.join(" ") : null,
          expiresAt: row.expiresAt,
        },
      },
      { now },
    ),
  ]);
  return { row, key };
}

/** The user's keys that are not revoked (expired ones included, with their expiresAt), newest first. */
export async function listApiKeys({ db, userId }: TenantDeps): Promise<ApiKeyRow[]> {
  return db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.userId, userId), isNull(apiKeys.revokedAt)))
    .orderBy(desc(apiKeys.id))
    .limit(MAX_API_KEYS_PER_USER);
}

/**
 * Revokes a key: every later request with it is 401 — at once in this isolate (its cached
 * verification is dropped here), within the cache's 60 s elsewhere. Another user's key, an
 * unknown one and one already revoked are "not found".
 */
export async function revokeApiKey({ db, userId }: TenantDeps, keyId: string, opts: { now?: number } = {}) {
  const now = opts.now ?? Date.now();
  const notFound = new ApiError("not_found", `API key ${keyId} not found`);
  if (!isIdOf("apiKey", keyId)) throw notFound;
  const target = and(eq(apiKeys.id, keyId), eq(apiKeys.userId, userId));
  const [revoked] = await db.batch([
    db
      .update(apiKeys)
      .set({ revokedAt: now })
      .where(and(target, isNull(apiKeys.revokedAt)))
      .returning({ keyHash: apiKeys.keyHash, name: apiKeys.name }),
    recordAudit(
      db,
      {
        userId,
        actor: userActor(userId),
        action: "api_key.revoked",
        targetType: "api_key",
        targetId: keyId,
      },
      // Only when this batch's update revoked it (revoked_at is exactly now).
      { now, onlyIf: sql`EXISTS (SELECT 1 FROM ${apiKeys} WHERE ${target} AND ${apiKeys.revokedAt} = ${now})` },
    ),
  ]);
  const row = revoked[0];
  if (!row) throw notFound;
  forgetVerifiedApiKey(row.keyHash);
}
