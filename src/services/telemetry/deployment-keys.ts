// A deployment's telemetry verification key and identity, read from D1 and decrypted once per
// isolate. Deployments are immutable (their user, agent and secret never change), so a found key
// can be reused; the cache is bounded in size and time so that a deleted deployment (user
// deletion cascades) stops verifying within TELEMETRY_KEY_TTL_MS.
// A lookup that found no deployment is remembered too, for TELEMETRY_UNKNOWN_TTL_MS: otherwise
// every report naming an unknown id (a typo, a deleted deployment's worker, a scanner) costs one
// D1 read, and a flood of them is a flood of reads. The price: a deployment created after its id
// was looked up and not found is refused for up to that long. That cannot happen to a real worker:
// the deployment row is inserted before its code is uploaded or run, so the first report with a
// real id always finds its row; only a report that guessed an id before it existed is delayed.
// What the cache never holds: a lookup that failed (D1 error, decryption error) — retried on the
// next report, so an outage is never remembered.
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
/** How long "no deployment has this id" is remembered (see above). */
export const TELEMETRY_UNKNOWN_TTL_MS = 30_000;
const MAX_CACHED_KEYS = 2_000;

const MAX_CACHED_UNKNOWN = 10_000;

// Deployment id -> found key, up to TELEMETRY_KEY_TTL_MS stale: only a deleted deployment's key
// can go stale, and it verifies reports for at most that long. A miss (null) is not kept here…
const keys = new IsolateCache<string, DeploymentTelemetryKey | null>({
  maxEntries: MAX_CACHED_KEYS,
  ttlMs: TELEMETRY_KEY_TTL_MS,
  ttlOf: (found) => (found ? TELEMETRY_KEY_TTL_MS : 0),
});
// …but in a cache of its own (id -> until when it is known to be unknown), so that a scan of
// random ids never pushes known deployments' keys out.
const unknownIds = new Map<string, number>();

/** The deployment's key, or null when no deployment has this id. Throws on D1 or decryption failure. */
export async function deploymentTelemetryKey(
  deps: { db: Db; keyring: Keyring; now?: number },
  deploymentId: string,
): Promise<DeploymentTelemetryKey | null> {
  if (!isIdOf("deployment", deploymentId)) return null;
  const now = deps.now ?? Date.now();
  const unknownUntil = unknownIds.get(deploymentId);
  if (unknownUntil !== undefined) {
    if (now < unknownUntil) return null;
    unknownIds.delete(deploymentId);
  }
  // Concurrent reports of a cold deployment share one lookup while it is pending.
  const found = await keys.get(deploymentId, () => loadKey(deps, deploymentId), { now });
  if (found === null) {
    unknownIds.delete(deploymentId);
    unknownIds.set(deploymentId, now + TELEMETRY_UNKNOWN_TTL_MS);
    if (unknownIds.size > MAX_CACHED_UNKNOWN) {
      const oldest = unknownIds.keys().next().value;
      if (oldest !== undefined) unknownIds.delete(oldest);
    }
  }
  return found;
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
