// Standard Webhooks signing (https://www.standardwebhooks.com): the secret is `whsec_` + base64 of
// random bytes, the key is those bytes, and each signature is
// `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`. Several signatures
// (during a secret rotation) are separated by spaces; a receiver accepts any one that matches.
import { fromBase64 } from "../../crypto/encoding";
import { signHmacBase64 } from "../../crypto/hmac";

export const WEBHOOK_SECRET_PREFIX = "whsec_";
/** Key size: the specification allows 24 to 64 bytes. */
const SECRET_BYTES = 32;

export function generateWebhookSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(SECRET_BYTES));
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return `${WEBHOOK_SECRET_PREFIX}${btoa(bin)}`;
}

/** The HMAC key of a `whsec_…` secret: the base64-decoded part after the prefix. */
export function webhookSecretKey(secret: string): Uint8Array {
  if (!secret.startsWith(WEBHOOK_SECRET_PREFIX)) throw new Error("not a whsec_ secret");
  return fromBase64(secret.slice(WEBHOOK_SECRET_PREFIX.length));
}

/** The `webhook-signature` header: one `v1,<sig>` per secret, space-separated, newest first. */
export async function webhookSignature(
  secrets: readonly string[],
  msgId: string,
  timestampSeconds: number,
  body: string,
): Promise<string> {
  const content = `${msgId}.${timestampSeconds}.${body}`;
  const signatures = await Promise.all(
    secrets.map(async (secret) => `v1,${await signHmacBase64(webhookSecretKey(secret), content)}`),
  );
  return signatures.join(" ");
}
