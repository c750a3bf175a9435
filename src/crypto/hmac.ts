// HMAC-SHA256 signing and constant-time verification for telemetry (`v1=<lowercase hex>`).
import { fromHex, toHex } from "./encoding";

async function hmacKey(secret: Uint8Array, usage: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, [usage]);
}

export async function signHmacHex(secret: Uint8Array, body: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), body)));
}

/**
 * True when `signatureHex` is the HMAC-SHA256 of `body`. crypto.subtle.verify compares in
 * constant time; a signature that is not 64 hex chars is rejected before any comparison.
 */
export async function verifyHmacHex(secret: Uint8Array, body: Uint8Array, signatureHex: string): Promise<boolean> {
  if (!/^[0-9a-f]{64}$/.test(signatureHex)) return false;
  return crypto.subtle.verify("HMAC", await hmacKey(secret, "verify"), fromHex(signatureHex), body);
}
