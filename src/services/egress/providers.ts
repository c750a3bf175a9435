// Platform model providers: where `https://models.webhost.internal/<provider>/…` is forwarded and
// which of the gateway's secrets holds the key added on the way. Configured by MODEL_PROVIDERS
// (JSON); without it, OpenAI and Anthropic at their public APIs with the keys OPENAI_API_KEY and
// ANTHROPIC_API_KEY. Parsing is strict: a bad value stops the egress door from serving rather
// than sending a key somewhere unintended.
import { z } from "zod";

/** The wire format a provider speaks: how the key is sent and where usage is found in answers. */
export const PROVIDER_APIS = ["openai", "anthropic"] as const;
export type ProviderApi = (typeof PROVIDER_APIS)[number];

export type ModelProvider = {
  name: string;
  api: ProviderApi;
  /** No trailing slash; the path after `/<provider>` is appended to it. */
  baseUrl: string;
  /** The name of the gateway's secret (or var) holding the key. */
  keySecret: string;
};

export const DEFAULT_MODEL_PROVIDERS: Record<string, ModelProvider> = {
  openai: { name: "openai", api: "openai", baseUrl: "https://api.openai.com", keySecret: "OPENAI_API_KEY" },
  anthropic: {
    name: "anthropic",
    api: "anthropic",
    baseUrl: "https://api.anthropic.com",
    keySecret: "ANTHROPIC_API_KEY",
  },
};

const providerSchema = z.strictObject({
  api: z.enum(PROVIDER_APIS).optional(),
  baseUrl: z.url({ protocol: /^https?$/ }),
  keySecret: z.string().regex(/^[A-Z_][A-Z0-9_]{0,63}$/, "must be the name of a secret (A-Z, 0-9, _)"),
});

const providersSchema = z.record(z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/), providerSchema);

/** Throws an Error naming the bad entries; undefined or blank means the defaults. */
export function parseModelProviders(raw: string | undefined): Record<string, ModelProvider> {
  if (raw === undefined || raw.trim() === "") return DEFAULT_MODEL_PROVIDERS;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new Error("MODEL_PROVIDERS is not valid JSON");
  }
  const parsed = providersSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(
      parsed.error.issues
        .map((i) => `${["MODEL_PROVIDERS", ...i.path.map(String)].join(".")}: ${i.message}`)
        .join("; "),
    );
  }
  const out: Record<string, ModelProvider> = {};
  for (const [name, p] of Object.entries(parsed.data)) {
    const api = p.api ?? (name === "anthropic" ? "anthropic" : "openai");
    out[name] = { name, api, baseUrl: p.baseUrl.replace(/\/+$/, ""), keySecret: p.keySecret };
  }
  return out;
}

/** The provider's request headers carrying the key (whatever the agent sent for these is dropped). */
export function keyHeaders(provider: ModelProvider, key: string): Record<string, string> {
  return provider.api === "anthropic" ? { "x-api-key": key } : { authorization: `Bearer ${key}` };
}

/** Auth headers an agent may send that must never reach a provider next to the platform's key. */
export const AUTH_HEADERS = ["authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"];
