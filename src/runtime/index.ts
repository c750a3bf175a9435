// Chooses the runtime that runs a deployment. The "cloudflare" provider's mechanism comes from
// configuration (DISPATCH_MODE: loader, host or namespace); the "agentcore" provider is offered only
// when its configuration is complete (agentcore/config.ts). Everything that runs user code asks
// this factory for the RuntimeProvider, which routes each call by the deployment's provider;
// nothing else touches LOADER, DISPATCHER or AWS.
import { ConfigError } from "../lib/config-error";
import { type AgentCoreConfigVars, missingAgentCoreVars, parseAgentCoreConfig } from "./agentcore/config";
import { createAgentCoreRuntime } from "./agentcore/provider";
import type { AgentHostApi } from "./host/protocol";
import { createHostRuntime } from "./host/provider";
import { createLoaderRuntime } from "./loader";
import { createNamespaceRuntime, type NamespaceRuntimeEnv } from "./namespace/provider";
import type { RuntimeProvider, RuntimeProviderName } from "./types";

/** The bindings and variables of the gateway's env that the mechanisms read. */
export type RuntimeEnv = NamespaceRuntimeEnv &
  AgentCoreConfigVars & {
    LOADER?: WorkerLoader;
    /** DISPATCH_MODE=host: the agent host's AgentHost entrypoint (a service binding across dev sessions). */
    AGENT_HOST?: Fetcher;
  };

/** The parsed configuration the choice depends on (a slice of the gateway's Config). */
export type RuntimeConfig = { dispatchMode: "loader" | "host" | "namespace"; invokeTimeoutMs: number };

/** `exports` is the worker's own entrypoints (ctx.exports): the loader hands TelemetrySink, Egress and LogTail to agents. */
export type RuntimeDeps = { env: RuntimeEnv; ctx: { readonly exports?: Cloudflare.Exports }; config: RuntimeConfig };

/**
 * Why a provider cannot be used with this configuration (the names of what is missing), or null
 * when it can. Cheap: reads the env only.
 */
export function runtimeProviderUnavailable(env: RuntimeEnv, provider: RuntimeProviderName): string | null {
  if (provider !== "agentcore") return null;
  const missing = missingAgentCoreVars(env);
  if (missing.length) return `the gateway is not configured for agentcore (missing: ${missing.join(", ")})`;
  try {
    parseAgentCoreConfig(env);
    return null;
  } catch (err) {
    // Names the variables and the rules they break, never their values (lib/config-error.ts).
    return `the gateway's agentcore configuration is invalid (${err instanceof Error ? err.message : String(err)})`;
  }
}

function createCloudflareRuntime({ env, ctx, config }: RuntimeDeps): RuntimeProvider {
  switch (config.dispatchMode) {
    case "loader": {
      if (!env.LOADER) throw new ConfigError("DISPATCH_MODE=loader needs the LOADER (worker_loaders) binding");
      const sinks = ctx.exports;
      if (!sinks)
        throw new ConfigError("DISPATCH_MODE=loader needs the worker's ctx.exports (compatibility_date 2025 or later)");
      return createLoaderRuntime(env.LOADER, (props) => sinks.TelemetrySink({ props }), {
        egress: (props) => sinks.Egress({ props }),
        tail: (props) => sinks.LogTail({ props }),
      });
    }
    case "host": {
      // The Worker Loader in a separate process (src/agent-host/), so agents cannot stall the gateway.
      if (!env.AGENT_HOST) throw new ConfigError("DISPATCH_MODE=host needs the AGENT_HOST service binding");
      return createHostRuntime(env.AGENT_HOST as unknown as AgentHostApi, { invokeTimeoutMs: config.invokeTimeoutMs });
    }
    case "namespace":
      return createNamespaceRuntime({ env, invokeTimeoutMs: config.invokeTimeoutMs });
  }
}

/**
 * The gateway's runtime: each call goes to the provider of the deployment it concerns. Removal by
 * script name goes to every configured provider (a name is unique to one deployment, and removing
 * an absent one is not an error), so cleanup and retention need not know the provider.
 */
export function createRuntimeProvider(deps: RuntimeDeps): RuntimeProvider {
  let cloudflare: RuntimeProvider | undefined;
  let agentcore: ReturnType<typeof createAgentCoreRuntime> | undefined;
  const cf = () => {
    cloudflare ??= createCloudflareRuntime(deps);
    return cloudflare;
  };
  // Removal asks AgentCore only when it is usable: a half-configured AgentCore must not block the
  // cleanup of Cloudflare deployments.
  const agentCoreConfigured = () => runtimeProviderUnavailable(deps.env, "agentcore") === null;
  const ac = () => {
    agentcore ??= createAgentCoreRuntime({ env: deps.env, invokeTimeoutMs: deps.config.invokeTimeoutMs });
    return agentcore;
  };
  const pick = (provider: RuntimeProviderName | undefined): RuntimeProvider => (provider === "agentcore" ? ac() : cf());
  // Built now so a misconfigured Cloudflare mechanism fails where it did before (compose.ts builds lazily).
  const base = cf();

  const composite: RuntimeProvider = {
    deploy: (bundle) => pick(bundle.runtimeProvider).deploy(bundle),
    invoke: (target, request, opts) => pick(target.runtimeProvider).invoke(target, request, opts),
    async remove(scriptNames) {
      await base.remove(scriptNames);
      if (agentCoreConfigured()) await ac().remove(scriptNames);
    },
  };
  if (base.removeAgentScripts) {
    const byTag = base.removeAgentScripts.bind(base);
    composite.removeAgentScripts = async (agentId) => {
      const removed = await byTag(agentId);
      return removed + (agentCoreConfigured() ? await ac().removeAgentScripts(agentId) : 0);
    };
  }
  return composite;
}
