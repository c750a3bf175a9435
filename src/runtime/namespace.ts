// The `namespace` mechanism of the Cloudflare runtime provider (DISPATCH_MODE=namespace, the
// production default): each deployment is one script in a Workers for Platforms dispatch
// namespace, uploaded through the Cloudflare API and invoked through the DISPATCHER binding, so an
// invocation never leaves Cloudflare's edge. The user script's environment comes from the same
// functions the loader mechanism uses (plainUserEnv / secretUserEnv), with TELEMETRY as a service
// binding to the gateway's TelemetrySink entrypoint carrying the same props the loader gives it.
import { z } from "zod";
import { CloudflareClient, type FetchLike } from "../cloudflare/client";
import { type CloudflareEnvVars, parseCloudflareApiConfig } from "../cloudflare/config";
import { DispatchNamespaceScripts } from "../cloudflare/dispatch-scripts";
import { CloudflareApiError } from "../cloudflare/errors";
import {
  ES_MODULE_CONTENT_TYPE,
  type WorkerBinding,
  type WorkerModulePart,
  type WorkerUploadMetadata,
} from "../cloudflare/types";
import { ConfigError } from "../env";
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeLimits,
  type RuntimeProvider,
} from "./types";
import { plainUserEnv, secretUserEnv } from "./user-env";

/** The gateway's RPC entrypoint user scripts report telemetry to (src/telemetry/sink.ts). */
export const TELEMETRY_ENTRYPOINT = "TelemetrySink";
/** Default for GATEWAY_SERVICE_NAME: the gateway's script name in wrangler.toml. */
export const DEFAULT_GATEWAY_SERVICE_NAME = "webhost-gateway";
export const DEFAULT_INVOKE_TIMEOUT_MS = 30_000;
/**
 * Compatibility flags every user script runs with. Empty: user scripts get exactly their
 * deployment's compatibility date. The loader mechanism must pass the same list.
 */
export const USER_SCRIPT_COMPATIBILITY_FLAGS: readonly string[] = [];

/** The part of the gateway's env this mechanism reads. */
export type NamespaceRuntimeEnv = CloudflareEnvVars & {
  DISPATCHER?: DispatcherLike;
  DISPATCH_NAMESPACE?: string;
  GATEWAY_SERVICE_NAME?: string;
  INVOKE_TIMEOUT_MS?: string;
};

/** What invoke needs of the dispatch namespace binding (`DispatchNamespace` satisfies it). */
export type DispatcherLike = {
  get(
    name: string,
    args?: Record<string, unknown>,
    options?: { limits?: Partial<RuntimeLimits> },
  ): {
    fetch(request: Request): Promise<Response>;
  };
};

export type NamespaceRuntimeConfig = {
  namespace: string;
  gatewayServiceName: string;
  invokeTimeoutMs: number;
};

/** A RuntimeProvider that can also delete every script carrying a tag (agent cleanup). */
export interface NamespaceRuntime extends RuntimeProvider {
  readonly mechanism: "namespace";
  /** Deletes the scripts tagged `tag`; resolves with how many were deleted. */
  removeByTag(tag: string): Promise<number>;
}

const blankToUndefined = (v: unknown) => (typeof v === "string" && v.trim() === "" ? undefined : v);

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
  INVOKE_TIMEOUT_MS: z.preprocess(
    blankToUndefined,
    z.coerce.number().int().min(100).max(300_000).default(DEFAULT_INVOKE_TIMEOUT_MS),
  ),
});

export function parseNamespaceRuntimeConfig(env: NamespaceRuntimeEnv): NamespaceRuntimeConfig {
  const parsed = namespaceConfigSchema.safeParse(env);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new ConfigError(`invalid configuration: ${fields}`);
  }
  return {
    namespace: parsed.data.DISPATCH_NAMESPACE,
    gatewayServiceName: parsed.data.GATEWAY_SERVICE_NAME,
    invokeTimeoutMs: parsed.data.INVOKE_TIMEOUT_MS,
  };
}

// ---------------------------------------------------------------------------------------------
// What a deployment's upload contains

/** Tags put on every uploaded script (at most 8 are allowed; no "," or "&"). */
export function userTag(userId: string): string {
  return `user-${userId}`;
}
export function agentTag(agentId: string): string {
  return `agent-${agentId}`;
}
export function deploymentTag(deploymentId: string): string {
  return `deployment-${deploymentId}`;
}

/**
 * The user script's bindings: identity as plain_text, the telemetry key and the agent's secrets
 * as secret_text, TELEMETRY as a service binding to the gateway's TelemetrySink whose props are
 * the identity the gateway cross-checks (the loader hands the same props to the same class).
 */
export function namespaceBindings(bundle: DeploymentBundle, gatewayServiceName: string): WorkerBinding[] {
  const plain = plainUserEnv(bundle);
  const bindings: WorkerBinding[] = [
    {
      type: "service",
      name: "TELEMETRY",
      service: gatewayServiceName,
      entrypoint: TELEMETRY_ENTRYPOINT,
      props: { userId: bundle.userId, agentId: bundle.agentId, deploymentId: bundle.deploymentId },
    },
  ];
  for (const [name, text] of Object.entries(plain)) bindings.push({ type: "plain_text", name, text });
  for (const [name, text] of Object.entries(secretUserEnv(bundle))) {
    // Platform names win: a secret can never shadow an identity value or TELEMETRY.
    if (name in plain || name === "TELEMETRY") continue;
    bindings.push({ type: "secret_text", name, text });
  }
  return bindings;
}

export function namespaceUpload(
  bundle: DeploymentBundle,
  gatewayServiceName: string,
): { metadata: WorkerUploadMetadata; modules: WorkerModulePart[] } {
  return {
    metadata: {
      main_module: bundle.mainModuleName,
      compatibility_date: bundle.compatibilityDate,
      compatibility_flags: [...USER_SCRIPT_COMPATIBILITY_FLAGS],
      bindings: namespaceBindings(bundle, gatewayServiceName),
      tags: [userTag(bundle.userId), agentTag(bundle.agentId), deploymentTag(bundle.deploymentId)],
    },
    modules: [{ name: bundle.mainModuleName, content: bundle.moduleCode, contentType: ES_MODULE_CONTENT_TYPE }],
  };
}

// ---------------------------------------------------------------------------------------------
// How Workers for Platforms reports invocation failures

/**
 * Classifies what `DISPATCHER.get(...)` or the returned fetcher's `fetch()` threw. Workers for
 * Platforms reports these as exceptions whose messages are the only signal:
 * - a missing script: an Error whose message starts with "Worker not found" (documented);
 * - a custom limit hit: the user worker "immediately throws an exception" (documented); the
 *   messages seen are "Worker exceeded CPU time limit." and "Too many subrequests by single
 *   Worker invocation." (the CPU one is matched on "CPU time limit" as Cloudflare's own example
 *   does; the subrequest wording is not in Cloudflare's docs);
 * - anything else the user worker threw propagates as-is: an exception.
 */
export function classifyDispatchError(err: unknown, scriptName: string): RuntimeError {
  const message = err instanceof Error ? err.message : String(err);
  if (/needs to be run remotely/i.test(message)) {
    // miniflare (wrangler dev --env production) has no dispatch namespaces.
    return new RuntimeError("unavailable", "dispatch namespaces cannot run locally", false, { cause: err });
  }
  if (/^Worker not found/i.test(message)) {
    return new RuntimeError("script_not_found", `script ${scriptName} is not in the dispatch namespace`, false, {
      cause: err,
    });
  }
  if (/CPU time limit|exceeded CPU|too many subrequests|subrequest limit|exceeded memory limit/i.test(message)) {
    return new RuntimeError("limit_exceeded", `the agent exceeded a resource limit: ${message.slice(0, 200)}`, false, {
      cause: err,
    });
  }
  return new RuntimeError("exception", `the agent threw an exception: ${message.slice(0, 200)}`, false, {
    cause: err,
  });
}

function runtimeErrorFromApi(err: unknown): unknown {
  if (!(err instanceof CloudflareApiError)) return err;
  // Retryable API failures (429, 5xx, network, timeout) leave the deployment to be retried; the
  // others (bad script, bad token, missing namespace) are permanent. The message is Cloudflare's.
  return new RuntimeError(err.retryable ? "unavailable" : "load_failed", err.message, err.retryable, { cause: err });
}

// ---------------------------------------------------------------------------------------------

export type CreateNamespaceRuntimeOptions = {
  env: NamespaceRuntimeEnv;
  /** Replaces global fetch for Cloudflare API calls (tests, the local fake API). */
  fetch?: FetchLike;
  /** Replaces env.DISPATCHER (tests: a fake dispatcher). */
  dispatcher?: DispatcherLike;
};

/**
 * Builds the namespace mechanism from the gateway's env. Throws ConfigError when a required
 * variable (DISPATCH_NAMESPACE, CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN) is missing or bad.
 * Cheap: no I/O until deploy/invoke/remove is called.
 */
export function createNamespaceRuntime(opts: CreateNamespaceRuntimeOptions): NamespaceRuntime {
  const config = parseNamespaceRuntimeConfig(opts.env);
  const client = new CloudflareClient(parseCloudflareApiConfig(opts.env), { fetch: opts.fetch });
  const scripts = new DispatchNamespaceScripts(client, config.namespace);
  const dispatcher = opts.dispatcher ?? opts.env.DISPATCHER;

  return {
    mechanism: "namespace",

    async deploy(bundle: DeploymentBundle): Promise<void> {
      const { metadata, modules } = namespaceUpload(bundle, config.gatewayServiceName);
      try {
        await scripts.upload(bundle.scriptName, metadata, modules);
      } catch (err) {
        throw runtimeErrorFromApi(err);
      }
    },

    async invoke(target: InvokeTarget, request: Request, { limits }: { limits: RuntimeLimits }): Promise<Response> {
      if (!dispatcher) {
        throw new RuntimeError("unavailable", "the DISPATCHER binding is not configured", false);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const controller = new AbortController();
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(new RuntimeError("timeout", `the agent did not answer within ${config.invokeTimeoutMs} ms`, false));
        }, config.invokeTimeoutMs);
      });
      try {
        // get() itself may throw "Worker not found"; keep it inside the same classification.
        const fetcher = dispatcher.get(
          target.scriptName,
          {},
          { limits: { cpuMs: limits.cpuMs, subRequests: limits.subRequests } },
        );
        // Aborted by our own timer or by the caller (the gateway's deadline usually fires first).
        const signal = AbortSignal.any([request.signal, controller.signal]);
        return await Promise.race([fetcher.fetch(new Request(request, { signal })), timedOut]);
      } catch (err) {
        if (err instanceof RuntimeError) throw err;
        throw classifyDispatchError(err, target.scriptName);
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    },

    async remove(scriptNames: string[]): Promise<void> {
      for (const name of scriptNames) {
        try {
          await scripts.delete(name); // an absent script is already removed
        } catch (err) {
          throw runtimeErrorFromApi(err);
        }
      }
    },

    async removeByTag(tag: string): Promise<number> {
      try {
        const { deleted, hasMore } = await scripts.deleteByTag(tag);
        if (hasMore) {
          throw new RuntimeError("unavailable", `scripts tagged ${tag} remain after repeated deletes`, true);
        }
        return deleted;
      } catch (err) {
        throw runtimeErrorFromApi(err);
      }
    },
  };
}

/** True for a runtime that can delete scripts by tag (the namespace mechanism). */
export function canRemoveByTag(runtime: RuntimeProvider): runtime is NamespaceRuntime {
  return typeof (runtime as Partial<NamespaceRuntime>).removeByTag === "function";
}
