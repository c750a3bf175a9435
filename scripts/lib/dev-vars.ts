// Reads and creates the git-ignored .dev.vars that `npm run dev` and `npm run token` share, and
// mints tokens with its local signing key (DEV_SIGNING_JWK), which the dev server trusts through
// AUTH_JWKS in the same file.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mintToken, newSigningKey } from "./tokens.ts";

export const DEV_VARS_PATH = new URL("../../.dev.vars", import.meta.url);
export const LOCAL_ISSUER = "http://127.0.0.1:8787/local-dev";
export const DEV_KID = "local-dev-es256";

export function readDevVars(): Record<string, string> {
  if (!existsSync(DEV_VARS_PATH)) return {};
  const vars: Record<string, string> = {};
  for (const line of readFileSync(DEV_VARS_PATH, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m?.[1] || m[2] === undefined) continue;
    let value = m[2];
    if (value.startsWith("'") && value.endsWith("'")) value = value.slice(1, -1);
    vars[m[1]] = value;
  }
  return vars;
}

/** Creates .dev.vars on first run; never overwrites an existing file. Returns true if created. */
export async function ensureDevVars(): Promise<boolean> {
  if (existsSync(DEV_VARS_PATH)) return false;
  const { publicJwk, privateJwk } = await newSigningKey(DEV_KID);
  const lines = [
    "# Written by `npm run dev` on first run. Local development only; never commit or deploy these.",
    `SECRETS_ENCRYPTION_KEY=${randomBytes(32).toString("base64")}`,
    "# Private key `npm run token` signs with; the gateway verifies against AUTH_JWKS below.",
    `DEV_SIGNING_JWK='${JSON.stringify(privateJwk)}'`,
    `AUTH_JWKS='${JSON.stringify({ keys: [publicJwk] })}'`,
    "",
  ];
  writeFileSync(DEV_VARS_PATH, lines.join("\n"), { mode: 0o600, flag: "wx" });
  return true;
}

/**
 * A token for `local|<name>` signed with .dev.vars' key (created first if missing). The issuer
 * defaults to $AUTH_ISSUER or the local dev server's; the token lives `ttlSeconds` (default 1 h).
 */
export async function mintDevToken(
  name: string,
  options: { issuer?: string; ttlSeconds?: number; subject?: string; audience?: string } = {},
): Promise<string> {
  await ensureDevVars();
  const jwk = readDevVars().DEV_SIGNING_JWK;
  if (!jwk)
    throw new Error(".dev.vars has no DEV_SIGNING_JWK; move the file away and run `npm run dev` to recreate it.");
  return mintToken(jwk, {
    subject: options.subject ?? `local|${name}`,
    issuer: options.issuer ?? process.env.AUTH_ISSUER ?? LOCAL_ISSUER,
    expiresIn: options.ttlSeconds ?? 3600,
    audience: options.audience,
    claims: { name },
  });
}
