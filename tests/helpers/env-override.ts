// A modified env for service calls that need configuration other than vitest.config.ts gives
// everyone (TIER_LIMITS, encryption keys); HTTP calls with one go through helpers/app.ts.
import { env } from "cloudflare:workers";

export type EnvOverrides = Partial<
  Record<"TIER_LIMITS" | "SECRETS_ENCRYPTION_KEY" | "SECRETS_ENCRYPTION_PREVIOUS_KEYS", string>
>;

/** A new env object: it gets its own parsed configuration (getConfig caches per env object). */
export function envWith(overrides: EnvOverrides): typeof env {
  return { ...env, ...overrides };
}

/** A fresh random 32-byte key, base64. */
export function randomKey(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
}
