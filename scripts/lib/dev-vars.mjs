// Reads and creates the git-ignored .dev.vars that `npm run dev` and `npm run token` share.

import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { exportJWK, generateKeyPair } from "jose";

export const DEV_VARS_PATH = new URL("../../.dev.vars", import.meta.url);
export const LOCAL_ISSUER = "http://127.0.0.1:8787/local-dev";
export const DEV_KID = "local-dev-es256";

export function readDevVars() {
  if (!existsSync(DEV_VARS_PATH)) return {};
  const vars = {};
  for (const line of readFileSync(DEV_VARS_PATH, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let value = m[2];
    if (value.startsWith("'") && value.endsWith("'")) value = value.slice(1, -1);
    vars[m[1]] = value;
  }
  return vars;
}

/** Creates .dev.vars on first run; never overwrites an existing file. Returns true if created. */
export async function ensureDevVars() {
  if (existsSync(DEV_VARS_PATH)) return false;
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const pub = { ...(await exportJWK(publicKey)), kid: DEV_KID, alg: "ES256", use: "sig" };
  const priv = { ...(await exportJWK(privateKey)), kid: DEV_KID, alg: "ES256" };
  const lines = [
    "# Written by `npm run dev` on first run. Local development only; never commit or deploy these.",
    `SECRETS_ENCRYPTION_KEY=${randomBytes(32).toString("base64")}`,
    "# Private key `npm run token` signs with; the gateway verifies against AUTH_JWKS below.",
    `DEV_SIGNING_JWK='${JSON.stringify(priv)}'`,
    `AUTH_JWKS='${JSON.stringify({ keys: [pub] })}'`,
    "",
  ];
  writeFileSync(DEV_VARS_PATH, lines.join("\n"), { mode: 0o600, flag: "wx" });
  return true;
}
