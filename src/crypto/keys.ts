// The encryption keyring: the current SECRETS_ENCRYPTION_KEY encrypts; previous keys
// (SECRETS_ENCRYPTION_PREVIOUS_KEYS, comma-separated) still decrypt, which is how rotation works.
// A key's id is derived from its bytes, so no one has to name keys by hand.
import { fromBase64, fromHex, sha256Hex } from "./encoding";

export type EncryptionKey = { id: string; key: CryptoKey };
export type Keyring = { current: EncryptionKey; byId: Map<string, EncryptionKey> };

/** Parses 32 bytes given as base64, base64url or `hex:<64 hex chars>`. */
export function parseKeyBytes(text: string): Uint8Array {
  const trimmed = text.trim();
  let bytes: Uint8Array;
  try {
    bytes = trimmed.startsWith("hex:") ? fromHex(trimmed.slice(4)) : fromBase64(trimmed);
  } catch {
    throw new Error("an encryption key is neither base64 nor hex:…");
  }
  if (bytes.length !== 32) throw new Error(`an encryption key must be 32 bytes, got ${bytes.length}`);
  return bytes;
}

export async function keyIdOf(bytes: Uint8Array): Promise<string> {
  return (await sha256Hex(bytes)).slice(0, 12);
}

async function importKey(text: string): Promise<EncryptionKey> {
  const bytes = parseKeyBytes(text);
  const key = await crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]);
  return { id: await keyIdOf(bytes), key };
}

export async function parseKeyring(current: string, previous?: string): Promise<Keyring> {
  const currentKey = await importKey(current);
  const byId = new Map([[currentKey.id, currentKey]]);
  for (const part of (previous ?? "").split(",")) {
    if (part.trim() === "") continue;
    const k = await importKey(part);
    if (!byId.has(k.id)) byId.set(k.id, k);
  }
  return { current: currentKey, byId };
}
