// The composition root: every entry point (an HTTP request, a queue batch, a cron run, a
// TelemetrySink call) gets its services from here; no route or service builds a client or chooses
// a runtime. The paths that must keep working on a bad setting (metering, the dead-letter queue,
// the D1-only cron tasks) build just the db client. Services receive what they need from this object.
import type { Keyring } from "./crypto/keys";
import { createDb, type Db } from "./db/client";
import type { Config, Env } from "./env";
import { createRuntimeProvider, runtimeProviderUnavailable } from "./runtime";
import type { RuntimeProvider, RuntimeProviderName } from "./runtime/types";
import type { AgentLogStores, AgentLogsApi } from "./services/logs/types";
import type { RunRecorderApi, RunRecorders } from "./services/runs/types";
import { type SessionKeeperApi, type SessionKeepers, sessionObjectName } from "./services/sessions/types";
import type { TierLimitsByTier } from "./services/usage/tiers";

export type Services = {
  db: Db;
  config: Config;
  keyring: Keyring;
  tierLimits: TierLimitsByTier;
  /** Built on first use: only what runs user code needs the runtime's configuration to be valid. */
  readonly runtime: RuntimeProvider;
  /** Why a deployment cannot use this runtime provider here (what configuration is missing), or null. */
  runtimeProviderUnavailable(provider: RuntimeProviderName): string | null;
  deployQueue: Env["DEPLOY_QUEUE"];
  /** The ARTIFACTS bucket; undefined when not bound (deploys then answer 503, loads fail). */
  artifacts: Env["ARTIFACTS"];
  usageQueue: Env["USAGE_QUEUE"];
  /** Lifecycle webhook deliveries (services/webhooks). */
  webhookQueue: Env["WEBHOOK_QUEUE"];
  /** A run's Durable Object, by run id. */
  runs: RunRecorders;
  /** A session's Durable Object, by (user, agent, session id). */
  sessions: SessionKeepers;
  /** An agent's log buffer (its AgentLogs Durable Object), by agent id. */
  logs: AgentLogStores;
  /** Keeps work alive after the response (ExecutionContext.waitUntil). */
  waitUntil(promise: Promise<unknown>): void;
};

/**
 * What an entry point's context offers that services use. Hono types its `executionCtx` with
 * `exports` optional, so this is the common shape of Hono's and the Workers runtime's contexts.
 */
export type EntryContext = {
  waitUntil(promise: Promise<unknown>): void;
  readonly exports?: Cloudflare.Exports;
};

export function composeServices(env: Env, ctx: EntryContext, config: Config): Services {
  let runtime: RuntimeProvider | undefined;
  return {
    db: createDb(env.DB),
    config,
    keyring: config.keyring,
    tierLimits: config.tierLimits,
    get runtime() {
      runtime ??= createRuntimeProvider({ env, ctx, config });
      return runtime;
    },
    runtimeProviderUnavailable: (provider) => runtimeProviderUnavailable(env, provider),
    deployQueue: env.DEPLOY_QUEUE,
    artifacts: env.ARTIFACTS,
    usageQueue: env.USAGE_QUEUE,
    webhookQueue: env.WEBHOOK_QUEUE,
    runs: (runId) => env.RUNS.get(env.RUNS.idFromName(runId)) as unknown as RunRecorderApi,
    sessions: sessionKeepers(env),
    logs: (agentId) => env.AGENT_LOGS.get(env.AGENT_LOGS.idFromName(agentId)) as unknown as AgentLogsApi,
    waitUntil: (promise) => ctx.waitUntil(promise),
  };
}

function sessionKeepers(env: Env): SessionKeepers {
  return (key) => env.SESSIONS.get(env.SESSIONS.idFromName(sessionObjectName(key))) as unknown as SessionKeeperApi;
}

/**
 * What ending a run's bookkeeping needs — the db, the usage queue, the sessions' objects — built
 * without the configuration, so a run whose setup failed on a bad setting can still free its
 * session's turn.
 */
export function configFreeServices(env: Env): Pick<Services, "db" | "usageQueue" | "sessions"> {
  return { db: createDb(env.DB), usageQueue: env.USAGE_QUEUE, sessions: sessionKeepers(env) };
}
