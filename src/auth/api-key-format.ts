// The API key format: `whk_` + 43 base62 characters (32 random bytes) + 6 base62 characters of
// checksum (CRC-32 of the random part). The fixed prefix lets secret scanners recognise a leaked
// key; the checksum lets them (and us) reject a mistyped or made-up key without a database read.

import { sha256Hex } from "../crypto/encoding";

export const API_KEY_PREFIX = "whk_";
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_BYTES = 32;
const BODY_CHARS = 43; // ceil(256 / log2(62))
const CHECKSUM_CHARS = 6; // 62^6 > 2^32
export const API_KEY_PATTERN = /^whk_[0-9A-Za-z]{49}$/;

function toBase62(bytes: Uint8Array, width: number): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out.padStart(width, "0");
}

let crcTable: Uint32Array | undefined;
function crc32(text: string): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of new TextEncoder().encode(text)) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function checksumOf(body: string): string {
  const c = crc32(body);
  return toBase62(new Uint8Array([c >>> 24, (c >>> 16) & 0xff, (c >>> 8) & 0xff, c & 0xff]), CHECKSUM_CHARS);
}

export function generateApiKey(): string {
  const body = toBase62(crypto.getRandomValues(new Uint8Array(RANDOM_BYTES)), BODY_CHARS);
  return `${API_KEY_PREFIX}${body}${checksumOf(body)}`;
}

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith(API_KEY_PREFIX);
}

/** Shape and checksum; a key that fails is unknown without asking the database. */
export function isWellFormedApiKey(key: string): boolean {
  if (!API_KEY_PATTERN.test(key)) return false;
  const body = key.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + BODY_CHARS);
  return checksumOf(body) === key.slice(API_KEY_PREFIX.length + BODY_CHARS);
}

/** What a list shows to tell keys apart: `whk_` + the first 8 characters. */
export function apiKeyDisplayPrefix(key: string): string {
  return key.slice(0, API_KEY_PREFIX.length + 8);
}

/**
 * Hex SHA-256 of the key. A fast hash is right here: the key carries 256 random bits, so no one
 * can guess keys against a stolen hash, and verification stays one digest per cache miss.
 */
export function hashApiKey(key: string): Promise<string> {
  return sha256Hex(key);
}
