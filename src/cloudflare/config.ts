// Configuration of the Cloudflare API module, read from the gateway's vars and secrets. Parsed
// only when the namespace mechanism is in use, so local development needs none of it.
import { z } from "zod";
import { invalidConfiguration } from "../lib/config-error";
import { blankToUndefined } from "../lib/env-vars";

export const DEFAULT_CLOUDFLARE_API_BASE_URL = "https://api.cloudflare.com/client/v4";
export const DEFAULT_CLOUDFLARE_API_TIMEOUT_MS = 30_000;

export type CloudflareApiConfig = {
  baseUrl: string;
  accountId: string;
  /** Bearer token; never logged, never part of an error. */
  apiToken: string;
  timeoutMs: number;
};

export type CloudflareEnvVars = {
  CLOUDFLARE_API_BASE_URL?: string;
  CLOUDFLARE_ACCOUNT_ID?: string;
  CLOUDFLARE_API_TOKEN?: string;
  CLOUDFLARE_API_TIMEOUT_MS?: string;
};

const schema = z.object({
  CLOUDFLARE_API_BASE_URL: z.preprocess(blankToUndefined, z.url().default(DEFAULT_CLOUDFLARE_API_BASE_URL)),
  CLOUDFLARE_ACCOUNT_ID: z.preprocess(
    blankToUndefined,
    z.string({ error: "CLOUDFLARE_ACCOUNT_ID is required" }).regex(/^[0-9a-f]{32}$/, "must be a 32-character hex id"),
  ),
  CLOUDFLARE_API_TOKEN: z.preprocess(blankToUndefined, z.string({ error: "CLOUDFLARE_API_TOKEN is required" }).min(1)),
  CLOUDFLARE_API_TIMEOUT_MS: z.preprocess(
    blankToUndefined,
    z.coerce.number().int().min(100).max(120_000).default(DEFAULT_CLOUDFLARE_API_TIMEOUT_MS),
  ),
});

export function parseCloudflareApiConfig(env: CloudflareEnvVars): CloudflareApiConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    // Issue messages name the variable and the rule, never the value (the token is in here).
    throw invalidConfiguration(parsed.error.issues);
  }
  const v = parsed.data;
  return {
    baseUrl: v.CLOUDFLARE_API_BASE_URL.replace(/\/+$/, ""),
    accountId: v.CLOUDFLARE_ACCOUNT_ID,
    apiToken: v.CLOUDFLARE_API_TOKEN,
    timeoutMs: v.CLOUDFLARE_API_TIMEOUT_MS,
  };
}
