// HMAC-SHA256 signing and constant-time verification for telemetry (`v1=<lowercase hex>`), and
// the base64 signatures of Standard Webhooks (services/webhooks/signing.ts).
import { fromHex, toHex, utf8 } from "./encoding";

async function hmacKey(secret: Uint8Array, usage: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, [usage]);
}

/** A non-extractable verify-only key, for callers that verify many bodies under one secret. */
export function importHmacVerifyKey(secret: Uint8Array): Promise<CryptoKey> {
  return hmacKey(secret, "verify");
}

export async function signHmacHex(secret: Uint8Array, body: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), body)));
}

/**
 * True when `signatureHex` is the HMAC-SHA256 of `body`. crypto.subtle.verify compares in
 * constant time; a signature that is not 64 lowercase hex chars is rejected before any comparison.
 * `secret` is the raw key bytes or a key from `importHmacVerifyKey`.
 */
export async function verifyHmacHex(
  secret: Uint8Array | CryptoKey,
  body: Uint8Array,
  signatureHex: string,
): Promise<boolean> {
  if (!/^[0-9a-f]{64}$/.test(signatureHex)) return false;
  const key = secret instanceof Uint8Array ? await hmacKey(secret, "verify") : secret;
  return crypto.subtle.verify("HMAC", key, fromHex(signatureHex), body);
}

/** Standard base64 (with padding) of the HMAC-SHA256 of `message` under `secret`. */
export async function signHmacBase64(secret: Uint8Array, message: string): Promise<string> {
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), utf8.encode(message)));
  let bin = "";
  for (const b of mac) bin += String.fromCharCode(b);
  return btoa(bin);
}
