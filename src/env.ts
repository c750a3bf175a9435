// The gateway's bindings and configuration. String vars and secrets are validated once per
// isolate by `getConfig`; a bad value stops the worker from serving (a configuration_error
// problem) instead of silently running with defaults.
import { z } from "zod";
import type { AuthConfig } from "./auth/jwt";
import { type Keyring, parseKeyring } from "./crypto/keys";
import type { AgentLogs } from "./entrypoints/agent-logs";
import type { SessionKeeper } from "./entrypoints/session-keeper";
import { invalidConfiguration } from "./lib/config-error";
import type { CleanupAgentScriptsJob } from "./services/cleanup/cleanup";
import type { DeployJob } from "./services/deployments/deploy-job";
import { type ModelProvider, parseModelProviders } from "./services/egress/providers";
import type { MetricsEvent } from "./services/metering/event";
import type { TelemetryReportMessage } from "./services/telemetry/enqueue";
import { parseTierLimits, type TierLimitsByTier } from "./services/usage/tiers";
import type { DeliveryPolicy } from "./services/webhooks/deliver";
import type { WebhookDeliveryJob } from "./services/webhooks/queue";

export interface Env {
  DB: D1Database;
  DEPLOY_QUEUE: Queue<DeployJob | CleanupAgentScriptsJob>;
  /** Gateway measurements (metrics events) and verified telemetry reports, one per message. */
  USAGE_QUEUE: Queue<MetricsEvent | TelemetryReportMessage>;
  /** Lifecycle webhook deliveries (src/services/webhooks/deliver.ts). */
  WEBHOOK_QUEUE: Queue<WebhookDeliveryJob>;
  /** Deployment bundles, content-addressed (src/services/deployments/artifacts.ts). */
  ARTIFACTS?: R2Bucket;
  LOADER?: WorkerLoader;
  /** DISPATCH_MODE=host: the agent host (wrangler.host.toml), a service binding across dev sessions. */
  AGENT_HOST?: Fetcher;
  DISPATCHER?: DispatchNamespace;
  /**
   * One RunRecorder Durable Object per run (src/entrypoints/run-recorder.ts). Untyped here: the
   * object reads this env (a background run's alarm), so naming its class would be an import cycle;
   * compose.ts gives what RUNS.get returns the RunRecorderApi type.
   */
  RUNS: DurableObjectNamespace;
  /** One SessionKeeper Durable Object per (user, agent, session id) (src/entrypoints/session-keeper.ts). */
  SESSIONS: DurableObjectNamespace<SessionKeeper>;
  /** One AgentLogs Durable Object per agent: its log buffer (src/entrypoints/agent-logs.ts). */
  AGENT_LOGS: DurableObjectNamespace<AgentLogs>;

  AUTH_ISSUER?: string;
  AUTH_AUDIENCE?: string;
  /** Comma-separated `azp` values a token must carry one of (Clerk: the frontend's origin). */
  AUTH_AUTHORIZED_PARTIES?: string;
  AUTH_JWKS?: string;
  AUTH_JWKS_URL?: string;

  SECRETS_ENCRYPTION_KEY?: string;
  SECRETS_ENCRYPTION_PREVIOUS_KEYS?: string;

  DISPATCH_MODE?: string;
  ENVIRONMENT?: string;

  /** Parsed here (Config.invokeTimeoutMs) and handed to whichever mechanism runs user code. */
  INVOKE_TIMEOUT_MS?: string;
  // Namespace mechanism (DISPATCH_MODE=namespace); parsed by src/runtime/namespace/config.ts and
  // src/cloudflare/config.ts only when that mechanism is used.
  DISPATCH_NAMESPACE?: string;
  GATEWAY_SERVICE_NAME?: string;
  CLOUDFLARE_API_BASE_URL?: string;
  CLOUDFLARE_ACCOUNT_ID?: string;
  CLOUDFLARE_API_TOKEN?: string;
  CLOUDFLARE_API_TIMEOUT_MS?: string;
  // AgentCore provider (runtimeProvider "agentcore"); parsed by src/runtime/agentcore/config.ts
  // only when a deployment uses it. AWS_* are secrets.
  AGENTCORE_REGION?: string;
  AGENTCORE_ROLE_ARN?: string;
  AGENTCORE_ARTIFACT_BUCKET?: string;
  AWS_ACCESS_KEY_ID?: string;
  AWS_SECRET_ACCESS_KEY?: string;
  AGENTCORE_CONTROL_ENDPOINT?: string;
  AGENTCORE_DATA_ENDPOINT?: string;
  AGENTCORE_S3_ENDPOINT?: string;
  GATEWAY_PUBLIC_URL?: string;
  /** How many inactive and ready deployments per agent keep their runtime script (rollback targets, manual releases). */
  DEPLOYMENT_RETENTION?: string;
  /** `all` (default), `errors` (5xx and slow requests only) or `none`: the per-request log line. */
  LOG_REQUESTS?: string;
  /** JSON overrides of the per-tier limits (see services/usage/tiers.ts). */
  TIER_LIMITS?: string;
  /** JSON: platform model providers (base URL, api, the name of the secret holding the key). */
  MODEL_PROVIDERS?: string;
  /** How long one outbound request of an agent may take, answer body included. */
  EGRESS_TIMEOUT_MS?: string;
  /** Delay of a webhook delivery's first retry in seconds; each later one doubles. */
  WEBHOOK_RETRY_BASE_SECONDS?: string;
  /** How long one webhook delivery attempt may take. */
  WEBHOOK_TIMEOUT_MS?: string;
}

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? undefined : v.trim()));

const configSchema = z.object({
  AUTH_ISSUER: z.string().min(1, "AUTH_ISSUER is required"),
  AUTH_AUDIENCE: optionalString,
  AUTH_AUTHORIZED_PARTIES: optionalString,
  AUTH_JWKS: optionalString,
  AUTH_JWKS_URL: optionalString.pipe(z.url().optional()),
  SECRETS_ENCRYPTION_KEY: z.string().min(1, "SECRETS_ENCRYPTION_KEY is required"),
  SECRETS_ENCRYPTION_PREVIOUS_KEYS: optionalString,
  DISPATCH_MODE: z.enum(["loader", "host", "namespace"]).default("loader"),
  ENVIRONMENT: z.string().default("development"),
  // How long the gateway waits for a user script's answer (and, when streaming, between events).
  INVOKE_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(30_000),
  TIER_LIMITS: optionalString,
  // Inactive deployments per agent whose runtime scripts are kept for rollback.
  DEPLOYMENT_RETENTION: z.coerce.number().int().min(0).max(1000).default(5),
  // Which requests get the one request log line: every one, only failed (5xx) and slow ones, none.
  LOG_REQUESTS: z.enum(["all", "errors", "none"]).default("all"),
  // Webhook retries: 30 s, 1 min, 2 min … (capped at the queue's 12 h) for about 3 days.
  WEBHOOK_RETRY_BASE_SECONDS: z.coerce.number().int().min(1).max(3600).default(30),
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(500).max(30_000).default(10_000),
});

export type Config = {
  auth: AuthConfig;
  keyring: Keyring;
  dispatchMode: "loader" | "host" | "namespace";
  environment: string;
  invokeTimeoutMs: number;
  tierLimits: TierLimitsByTier;
  deploymentRetention: number;
  logRequests: "all" | "errors" | "none";
  webhooks: DeliveryPolicy;
};

// Parsed configuration per env object (one per isolate in practice).
const configCache = new WeakMap<object, Promise<Config>>();

export function getConfig(env: Env): Promise<Config> {
  let cached = configCache.get(env);
  if (!cached) {
    cached = buildConfig(env);
    configCache.set(env, cached);
    // A failed parse is not cached: fixing a secret must not need a new isolate.
    cached.catch(() => configCache.delete(env));
  }
  return cached;
}

async function buildConfig(env: Env): Promise<Config> {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    throw invalidConfiguration(parsed.error.issues);
  }
  const v = parsed.data;
  const issuer = v.AUTH_ISSUER.replace(/\/+$/, "");
  const authorizedParties = (v.AUTH_AUTHORIZED_PARTIES ?? "")
    .split(",")
    .map((party) => party.trim())
    .filter((party) => party !== "");
  // Without either, any token the issuer signs (for any of its applications) would be accepted.
  if (v.ENVIRONMENT === "production" && v.AUTH_AUDIENCE === undefined && authorizedParties.length === 0) {
    throw invalidConfiguration(
      "AUTH_AUDIENCE or AUTH_AUTHORIZED_PARTIES: one is required in production (tokens must be checked for whom they are for)",
    );
  }
  // The agent host is a local mechanism (docs/local-isolation.md): production runs agents in a
  // dispatch namespace, and the host's bridge into the gateway is closed there.
  if (v.ENVIRONMENT === "production" && v.DISPATCH_MODE === "host") {
    throw invalidConfiguration("DISPATCH_MODE: host is for local development; production uses namespace");
  }
  let keyring: Keyring;
  try {
    keyring = await parseKeyring(v.SECRETS_ENCRYPTION_KEY, v.SECRETS_ENCRYPTION_PREVIOUS_KEYS);
  } catch (err) {
    throw invalidConfiguration((err as Error).message);
  }
  if (v.AUTH_JWKS !== undefined && !isJwks(v.AUTH_JWKS)) {
    throw invalidConfiguration('AUTH_JWKS: must be JSON of the form {"keys":[…]}');
  }
  let tierLimits: TierLimitsByTier;
  try {
    tierLimits = parseTierLimits(v.TIER_LIMITS);
  } catch (err) {
    throw invalidConfiguration((err as Error).message);
  }
  return {
    auth: {
      issuer: v.AUTH_ISSUER,
      audience: v.AUTH_AUDIENCE,
      authorizedParties: authorizedParties.length > 0 ? authorizedParties : undefined,
      jwks: v.AUTH_JWKS,
      jwksUrl: v.AUTH_JWKS_URL ?? `${issuer}/.well-known/jwks.json`,
    },
    keyring,
    dispatchMode: v.DISPATCH_MODE,
    environment: v.ENVIRONMENT,
    invokeTimeoutMs: v.INVOKE_TIMEOUT_MS,
    tierLimits,
    deploymentRetention: v.DEPLOYMENT_RETENTION,
    logRequests: v.LOG_REQUESTS,
    webhooks: { retryBaseSeconds: v.WEBHOOK_RETRY_BASE_SECONDS, timeoutMs: v.WEBHOOK_TIMEOUT_MS },
  };
}

function isJwks(text: string): boolean {
  try {
    const parsed = JSON.parse(text) as { keys?: unknown };
    return Array.isArray(parsed.keys) && parsed.keys.every((k) => typeof k === "object" && k !== null);
  } catch {
    return false;
  }
}

/**
 * What the egress door reads (src/entrypoints/egress.ts): a slice of the configuration of its own,
 * because in namespace mode the door is a separate Worker (src/outbound.ts) that has no auth or
 * encryption settings. Parsed once per env object; a bad value answers configuration_error to the
 * agent's fetch (and is logged), it does not stop the gateway.
 */
export type EgressConfig = {
  environment: string;
  tierLimits: TierLimitsByTier;
  providers: Record<string, ModelProvider>;
  timeoutMs: number;
};

const egressConfigSchema = z.object({
  ENVIRONMENT: z.string().default("development"),
  TIER_LIMITS: optionalString,
  MODEL_PROVIDERS: optionalString,
  // One outbound request of an agent, from the door's fetch to the end of the answer's body.
  EGRESS_TIMEOUT_MS: z.coerce.number().int().min(100).max(900_000).default(120_000),
});

const egressConfigCache = new WeakMap<object, EgressConfig>();

export function getEgressConfig(env: Env): EgressConfig {
  const cached = egressConfigCache.get(env);
  if (cached) return cached;
  const parsed = egressConfigSchema.safeParse(env);
  if (!parsed.success) throw invalidConfiguration(parsed.error.issues);
  const v = parsed.data;
  let config: EgressConfig;
  try {
    config = {
      environment: v.ENVIRONMENT,
      tierLimits: parseTierLimits(v.TIER_LIMITS),
      providers: parseModelProviders(v.MODEL_PROVIDERS),
      timeoutMs: v.EGRESS_TIMEOUT_MS,
    };
  } catch (err) {
    throw invalidConfiguration((err as Error).message);
  }
  egressConfigCache.set(env, config);
  return config;
}
