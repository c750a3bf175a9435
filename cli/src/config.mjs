// Where the CLI finds the API URL and the credential: flags, then WEBHOST_API_URL /
// WEBHOST_API_KEY, then the per-user config file written by `webhost login`
// ($WEBHOST_CONFIG_DIR, else $XDG_CONFIG_HOME/webhost, else ~/.config/webhost; config.json, 0600).
// A stored credential belongs to the API URL it was stored for and is never sent to another one.
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UsageError } from "./output.mjs";

export const DEFAULT_API_URL = "http://127.0.0.1:8787";

/** @param {Record<string, string | undefined>} env */
export function configDir(env = process.env) {
  if (env.WEBHOST_CONFIG_DIR) return env.WEBHOST_CONFIG_DIR;
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, "webhost");
  return join(homedir(), ".config", "webhost");
}

/** @param {Record<string, string | undefined>} env */
export function configPath(env = process.env) {
  return join(configDir(env), "config.json");
}

/**
 * @typedef {{ apiUrl?: string, credentials?: Record<string, string> }} StoredConfig
 * @param {Record<string, string | undefined>} env
 * @returns {StoredConfig}
 */
export function readConfig(env = process.env) {
  let text;
  try {
    text = readFileSync(configPath(env), "utf8");
  } catch {
    return {};
  }
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === "object" ? parsed : {};
  } catch {
    throw new UsageError(`${configPath(env)} is not valid JSON: fix it or run \`webhost login\` again`);
  }
}

/**
 * Writes the config file readable by its owner only (directory 0700, file 0600), atomically.
 * @param {StoredConfig} config
 * @param {Record<string, string | undefined>} env
 */
export function writeConfig(config, env = process.env) {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = configPath(env);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/** Trailing slashes do not make another API. */
export function normaliseUrl(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`API URL ${JSON.stringify(url)} is not a URL (expected e.g. ${DEFAULT_API_URL})`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(`API URL must be http or https, got ${parsed.protocol}`);
  }
  return parsed.href.replace(/\/+$/, "");
}

/**
 * The API URL and credential a command uses.
 * @param {{ apiUrl?: string }} flags
 * @param {Record<string, string | undefined>} env
 */
export function resolveSettings(flags, env = process.env) {
  const stored = readConfig(env);
  const apiUrl = normaliseUrl(flags.apiUrl ?? env.WEBHOST_API_URL ?? stored.apiUrl ?? DEFAULT_API_URL);
  const apiKey = env.WEBHOST_API_KEY || stored.credentials?.[apiUrl] || undefined;
  return { apiUrl, apiKey, source: env.WEBHOST_API_KEY ? "WEBHOST_API_KEY" : apiKey ? configPath(env) : undefined };
}

/**
 * What a credential is, without revealing it: an API key's prefix, or a JWT's subject and expiry.
 * @param {string} credential
 */
export function describeCredential(credential) {
  if (credential.startsWith("whk_")) return { kind: "apiKey", prefix: credential.slice(0, 12) };
  const [, payload] = credential.split(".");
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    return {
      kind: "token",
      subject: claims.sub ?? null,
      issuer: claims.iss ?? null,
      expiresAt: typeof claims.exp === "number" ? claims.exp * 1000 : null,
    };
  } catch {
    return { kind: "token", subject: null, issuer: null, expiresAt: null };
  }
}
