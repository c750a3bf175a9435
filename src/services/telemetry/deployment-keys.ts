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
import { IsolateCache } from "../../lib/isolate-cache";

export type DeploymentTelemetryKey = {
  deploymentId: string;
  userId: string;
  agentId: string;
  runtimeProvider: string;
  key: CryptoKey;
};

export const TELEMETRY_KEY_TTL_MS = 10 * 60 * 1000;
const MAX_CACHED_KEYS = 2_000;

// Deployment id -> found key, up to TELEMETRY_KEY_TTL_MS stale: only a deleted deployment's key
// can go stale, and it verifies reports for at most that long. A miss (null) is not kept.
const keys = new IsolateCache<string, DeploymentTelemetryKey | null>({
  maxEntries: MAX_CACHED_KEYS,
  ttlMs: TELEMETRY_KEY_TTL_MS,
  ttlOf: (found) => (found ? TELEMETRY_KEY_TTL_MS : 0),
});

/** The deployment's key, or null when no deployment has this id. Throws on D1 or decryption failure. */
export function deploymentTelemetryKey(
  deps: { db: Db; keyring: Keyring },
  deploymentId: string,
): Promise<DeploymentTelemetryKey | null> {
  if (!isIdOf("deployment", deploymentId)) return Promise.resolve(null);
  // Concurrent reports of a cold deployment share one lookup while it is pending.
  return keys.get(deploymentId, () => loadKey(deps, deploymentId));
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
