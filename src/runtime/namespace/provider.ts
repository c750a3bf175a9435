// The `namespace` mechanism of the Cloudflare runtime provider (DISPATCH_MODE=namespace, the
// production default): each deployment is one script in a Workers for Platforms dispatch
// namespace, uploaded through the Cloudflare API (upload.ts) and invoked through the DISPATCHER
// binding, so an invocation never leaves Cloudflare's edge. Failures are classified in errors.ts.
import { CloudflareClient, type FetchLike } from "../../cloudflare/client";
import { type CloudflareEnvVars, parseCloudflareApiConfig } from "../../cloudflare/config";
import { DispatchNamespaceScripts } from "../../cloudflare/dispatch-scripts";
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeLimits,
  type RuntimeProvider,
} from "../types";
import { agentTag, EGRESS_OUTBOUND_PARAMETER } from "../user-script";
import { type NamespaceConfigVars, parseNamespaceRuntimeConfig } from "./config";
import { classifyDispatchError, runtimeErrorFromApi } from "./errors";
import { namespaceUpload } from "./upload";

/** The part of the gateway's env this mechanism reads. */
export type NamespaceRuntimeEnv = CloudflareEnvVars &
  NamespaceConfigVars & {
    DISPATCHER?: DispatcherLike;
  };

/** What invoke needs of the dispatch namespace binding (`DispatchNamespace` satisfies it). */
export type DispatcherLike = {
  get(
    name: string,
    args?: Record<string, unknown>,
    options?: { limits?: Partial<RuntimeLimits>; outbound?: Record<string, unknown> },
  ): {
    fetch(request: Request): Promise<Response>;
  };
};

/** Who an outbound request of this invocation comes from, for the egress door. */
function egressIdentity(target: InvokeTarget, request: Request) {
  const invocationId = request.headers.get("x-request-id");
  return {
    userId: target.userId,
    agentId: target.agentId,
    deploymentId: target.deploymentId,
    ...(invocationId ? { invocationId } : {}),
  };
}

/** The namespace mechanism: it finds an agent's scripts itself, by the agent's tag. */
export interface NamespaceRuntime extends RuntimeProvider {
  readonly mechanism: "namespace";
  removeAgentScripts(agentId: string): Promise<number>;
}

export type CreateNamespaceRuntimeOptions = {
  env: NamespaceRuntimeEnv;
  /** How long to wait for the agent's answer: the gateway's Config.invokeTimeoutMs. */
  invokeTimeoutMs: number;
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
  const { invokeTimeoutMs } = opts;
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
        throw new RuntimeError("unavailable", "the DISPATCHER binding is not configured", false, {
          fault: "configuration",
        });
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const controller = new AbortController();
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(new RuntimeError("timeout", `the agent did not answer within ${invokeTimeoutMs} ms`, false));
        }, invokeTimeoutMs);
      });
      try {
        // get() itself may throw "Worker not found"; keep it inside the same classification.
        const fetcher = dispatcher.get(
          target.scriptName,
          {},
          {
            limits: { cpuMs: limits.cpuMs, subRequests: limits.subRequests },
            // The outbound Worker (the egress door) sees these as env values; the agent never does.
            outbound: { [EGRESS_OUTBOUND_PARAMETER]: egressIdentity(target, request) },
          },
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

    // By tag, so a script whose upload D1 never recorded goes too.
    async removeAgentScripts(agentId: string): Promise<number> {
      const tag = agentTag(agentId);
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
