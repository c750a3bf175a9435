// A deployment's telemetry verification key and identity, read from D1 and decrypted once per
// isolate. Deployments are immutable (their user, agent and secret never change), so a found key
// can be reused; the cache is bounded in size and time so that a deleted deployment (user
// deletion cascades) stops verifying within TELEMETRY_KEY_TTL_MS.
// What the cache never holds: a lookup that failed (D1 error, decryption error) or found nothing —
// those are retried on the next report, so an outage or a race with the deploy insert is never
// remembered.
import { eq } from "drizzle-orm";
import { telemetrySecretAad } from "../../crypto/aad";
import { fromBase64 } from "../../crypto/encoding";
import { decryptSecret } from "../../crypto/envelope";
import { importHmacVerifyKey } from "../../crypto/hmac";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { deployments } from "../../db/schema";
import { isIdOf } from "../../lib/ids";

export type DeploymentTelemetryKey = {
  deploymentId: string;
  userId: string;
  agentId: string;
  runtimeProvider: string;
  key: CryptoKey;
};

export const TELEMETRY_KEY_TTL_MS = 10 * 60 * 1000;
const MAX_CACHED_KEYS = 2_000;

// Isolate-lifetime cache: deployment id -> pending or found key (never a miss or a failure).
const cache = new Map<string, { value: Promise<DeploymentTelemetryKey | null>; expiresAt: number }>();

/** The deployment's key, or null when no deployment has this id. Throws on D1 or decryption failure. */
export function deploymentTelemetryKey(
  ctx: { db: Db; keyring: Keyring },
  deploymentId: string,
): Promise<DeploymentTelemetryKey | null> {
  if (!isIdOf("deployment", deploymentId)) return Promise.resolve(null);
  const now = Date.now();
  const hit = cache.get(deploymentId);
  if (hit && hit.expiresAt > now) {
    // Re-insert so that eviction drops the least recently used deployment, not a busy one.
    cache.delete(deploymentId);
    cache.set(deploymentId, hit);
    return hit.value;
  }

  const value = loadKey(ctx, deploymentId);
  // Concurrent reports of a cold deployment share one lookup while it is pending.
  cache.set(deploymentId, { value, expiresAt: now + TELEMETRY_KEY_TTL_MS });
  const forget = () => {
    if (cache.get(deploymentId)?.value === value) cache.delete(deploymentId);
  };
  value.then((found) => (found ? undefined : forget()), forget);
  if (cache.size > MAX_CACHED_KEYS) {
    // Map iteration is insertion (here: last use) order: drop the least recently used entry.
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  return value;
}

async function loadKey(
  { db, keyring }: { db: Db; keyring: Keyring },
  deploymentId: string,
): Promise<DeploymentTelemetryKey | null> {
  const row = await db
    .select({
      userId: deployments.userId,
      agentId: deployments.agentId,
      runtimeProvider: deployments.runtimeProvider,
      ciphertext: deployments.telemetrySecretCiphertext,
    })
    .from(deployments)
    .where(eq(deployments.id, deploymentId))
    .get();
  if (!row) return null;
  const plaintext = await decryptSecret(keyring, row.ciphertext, telemetrySecretAad(deploymentId));
  return {
    deploymentId,
    userId: row.userId,
    agentId: row.agentId,
    runtimeProvider: row.runtimeProvider,
    key: await importHmacVerifyKey(telemetryKeyBytes(plaintext)),
  };
}

/**
 * The 32 raw key bytes. The envelope holds the raw bytes (schema comment); the base64url text the
 * worker receives as TELEMETRY_SECRET (43 characters) is accepted too, since it names the same key.
 */
export function telemetryKeyBytes(plaintext: Uint8Array): Uint8Array {
  if (plaintext.length === 32) return plaintext;
  try {
    const decoded = fromBase64(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(plaintext));
    if (decoded.length === 32) return decoded;
  } catch {
    // fall through to the error below
  }
  throw new Error(`stored telemetry secret is not a 32-byte key (${plaintext.length} bytes)`);
}
