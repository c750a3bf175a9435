// The namespace mechanism's own configuration: which dispatch namespace user scripts live in, and
// the gateway's script name their TELEMETRY service binding points at. Parsed only when
// DISPATCH_MODE=namespace; the Cloudflare API's settings are src/cloudflare/config.ts's, and the
// invoke timeout comes from the gateway's Config (src/env.ts).
import { z } from "zod";
import { invalidConfiguration } from "../../lib/config-error";
import { blankToUndefined } from "../../lib/env-vars";

/** Default for GATEWAY_SERVICE_NAME: the gateway's script name in wrangler.toml. */
export const DEFAULT_GATEWAY_SERVICE_NAME = "webhost-gateway";

export type NamespaceConfigVars = {
  DISPATCH_NAMESPACE?: string;
  GATEWAY_SERVICE_NAME?: string;
};

export type NamespaceRuntimeConfig = {
  namespace: string;
  gatewayServiceName: string;
};

// Cloudflare script names: lowercase letters, digits, "-" and "_", at most 63 characters.
const scriptNamePattern = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const namespaceConfigSchema = z.object({
  DISPATCH_NAMESPACE: z.preprocess(
    blankToUndefined,
    z.string({ error: "DISPATCH_NAMESPACE is required when DISPATCH_MODE=namespace" }).min(1),
  ),
  GATEWAY_SERVICE_NAME: z.preprocess(
    blankToUndefined,
    z.string().regex(scriptNamePattern, "must be a Worker script name").default(DEFAULT_GATEWAY_SERVICE_NAME),
  ),
});

export function parseNamespaceRuntimeConfig(env: NamespaceConfigVars): NamespaceRuntimeConfig {
  const parsed = namespaceConfigSchema.safeParse(env);
  if (!parsed.success) throw invalidConfiguration(parsed.error.issues);
  return { namespace: parsed.data.DISPATCH_NAMESPACE, gatewayServiceName: parsed.data.GATEWAY_SERVICE_NAME };
}
