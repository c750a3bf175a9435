// Verifying an API key on every request without a database read per request. The rules:
// - a key is looked up by its SHA-256; unknown, expired and revoked keys are all the one answer
//   401 invalid_api_key (a caller learns nothing about which), and a failure is never cached;
// - a verified key is cached per isolate for at most API_KEY_CACHE_TTL_MS (60 s) and never past
//   its expiry, so a revoke reaches every isolate within 60 s; the isolate that revoked it drops
//   its entry at once (revokeApiKey calls forgetVerifiedApiKey);
// - lastUsedAt is written at most once a minute per key, after the response (waitUntil), and the
//   write itself is conditional, so isolates racing on one key still write about once a minute.
import { and, eq, isNull, lte, or } from "drizzle-orm";
import { hashApiKey, isWellFormedApiKey } from "../../auth/api-key-format";
import type { ApiKeyScope, Principal } from "../../auth/principal";
import type { Db } from "../../db/client";
import { apiKeys } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { IsolateCache } from "../../lib/isolate-cache";
import { describeError, logWarn } from "../../lib/logger";

export const API_KEY_CACHE_TTL_MS = 60_000;
export const LAST_USED_WRITE_INTERVAL_MS = 60_000;
const MAX_CACHED_KEYS = 10_000;

type Verified = Extract<Principal, { via: "api_key" }> & { expiresAt: number };

const verifiedKeys = new IsolateCache<string, Verified>({ maxEntries: MAX_CACHED_KEYS, ttlMs: API_KEY_CACHE_TTL_MS });
// Key id -> when this isolate last wrote its lastUsedAt.
const lastUsedWrites = new Map<string, number>();

export function invalidApiKey(): ApiError {
  return new ApiError("invalid_api_key", "the API key is unknown, expired or revoked");
}

class KeyNotValid extends Error {}

export async function verifyApiKey(
  deps: { db: Db; waitUntil?: (promise: Promise<unknown>) => void },
  key: string,
  opts: { now?: number } = {},
): Promise<Extract<Principal, { via: "api_key" }>> {
  const now = opts.now ?? Date.now();
  if (!isWellFormedApiKey(key)) throw invalidApiKey();
  const hash = await hashApiKey(key);
  let verified: Verified;
  try {
    verified = await verifiedKeys.get(hash, () => load(deps.db, hash, now), { now, waitUntil: deps.waitUntil });
  } catch (err) {
    if (err instanceof KeyNotValid) throw invalidApiKey();
    throw err;
  }
  // The cache keeps an entry at most 60 s; a key that expires sooner stops at its expiry.
  if (verified.expiresAt <= now) throw invalidApiKey();
  noteUse(deps, verified.keyId, now);
  const { expiresAt: _, ...principal } = verified;
  return principal;
}

async function load(db: Db, hash: string, now: number): Promise<Verified> {
  const row = await db.query.apiKeys.findFirst({ where: eq(apiKeys.keyHash, hash) });
  if (!row || row.revokedAt !== null || row.expiresAt <= now) throw new KeyNotValid();
  return {
    userId: row.userId,
    via: "api_key",
    keyId: row.id,
    scopes: row.scopes as ApiKeyScope[],
    agentIds: row.agentIds ?? null,
    expiresAt: row.expiresAt,
  };
}

function noteUse(deps: { db: Db; waitUntil?: (promise: Promise<unknown>) => void }, keyId: string, now: number) {
  const last = lastUsedWrites.get(keyId);
  if (last !== undefined && now - last < LAST_USED_WRITE_INTERVAL_MS && now >= last) return;
  if (lastUsedWrites.size >= MAX_CACHED_KEYS) lastUsedWrites.clear();
  lastUsedWrites.set(keyId, now);
  const write = deps.db
    .update(apiKeys)
    .set({ lastUsedAt: now })
    .where(
      and(
        eq(apiKeys.id, keyId),
        or(isNull(apiKeys.lastUsedAt), lte(apiKeys.lastUsedAt, now - LAST_USED_WRITE_INTERVAL_MS)),
      ),
    )
    .then(
      () => undefined,
      (err: unknown) => logWarn("api_key_last_used_write_failed", { keyId, error: describeError(err) }),
    );
  if (deps.waitUntil) deps.waitUntil(write);
}

/** Drops a key's cached verification in this isolate (called on revoke). */
export function forgetVerifiedApiKey(keyHash: string): void {
  verifiedKeys.delete(keyHash);
}

/** For tests: forget every cached key and lastUsedAt write. */
export function clearApiKeyCaches(): void {
  verifiedKeys.clear();
  lastUsedWrites.clear();
}
