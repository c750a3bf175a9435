// AES-256-GCM envelopes for secret material at rest:
//   v1.<keyId>.<iv base64url>.<ciphertext+tag base64url>
// The additional data names the row the secret belongs to (e.g. "deployment:dep_…:telemetry"),
// so a ciphertext copied into another row fails to decrypt.
import { fromBase64, toBase64Url, utf8 } from "./encoding";
import type { Keyring } from "./keys";

export class DecryptionError extends Error {
  override name = "DecryptionError";
}

export async function encryptSecret(keyring: Keyring, plaintext: Uint8Array | string, aad: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const data = typeof plaintext === "string" ? utf8.encode(plaintext) : plaintext;
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: utf8.encode(aad) },
    keyring.current.key,
    data,
  );
  return `v1.${keyring.current.id}.${toBase64Url(iv)}.${toBase64Url(new Uint8Array(sealed))}`;
}

export async function decryptSecret(keyring: Keyring, envelope: string, aad: string): Promise<Uint8Array> {
  const parts = envelope.split(".");
  if (parts.length !== 4 || parts[0] !== "v1") throw new DecryptionError("malformed secret envelope");
  const [, keyId, ivText, sealedText] = parts as [string, string, string, string];
  const key = keyring.byId.get(keyId);
  if (!key) throw new DecryptionError(`secret was encrypted under unknown key id ${keyId}`);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: fromBase64(ivText), additionalData: utf8.encode(aad) },
      key.key,
      fromBase64(sealedText),
    );
    return new Uint8Array(plain);
  } catch {
    throw new DecryptionError("secret failed to decrypt (wrong key, row or tampered ciphertext)");
  }
}

export async function decryptSecretText(keyring: Keyring, envelope: string, aad: string): Promise<string> {
  return new TextDecoder().decode(await decryptSecret(keyring, envelope, aad));
}

/** The key id an envelope was sealed under (for re-encryption after rotation). */
export function envelopeKeyId(envelope: string): string | undefined {
  return envelope.split(".")[1];
}
