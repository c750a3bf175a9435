// Calls the gateway with a modified env (e.g. another TIER_LIMITS or encryption keys) without
// touching vitest.config.ts: each new env object gets its own parsed configuration.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import worker from "../../src/index";
import type { CallOptions } from "./http";

export type EnvOverrides = Partial<
  Record<"TIER_LIMITS" | "SECRETS_ENCRYPTION_KEY" | "SECRETS_ENCRYPTION_PREVIOUS_KEYS", string>
>;

export function envWith(overrides: EnvOverrides): typeof env {
  return { ...env, ...overrides };
}

export async function callWithEnv(
  overrides: EnvOverrides | typeof env,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<Response> {
  const target = "DB" in overrides ? (overrides as typeof env) : envWith(overrides as EnvOverrides);
  const headers = new Headers(opts.headers);
  let body: BodyInit | undefined = opts.rawBody;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://gateway.test${path}`, { method, headers, body }), target, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** A fresh random 32-byte key, base64. */
export function randomKey(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
}
