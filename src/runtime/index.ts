// Chooses the dispatch mechanism from configuration (DISPATCH_MODE). Everything that runs user
// code asks this factory for the RuntimeProvider; nothing else touches LOADER or DISPATCHER.
import { ConfigError } from "../lib/config-error";
import { createLoaderRuntime } from "./loader";
import { createNamespaceRuntime, type NamespaceRuntimeEnv } from "./namespace/provider";
import type { RuntimeProvider } from "./types";

/** The bindings and variables of the gateway's env that the mechanisms read. */
export type RuntimeEnv = NamespaceRuntimeEnv & { LOADER?: WorkerLoader };

/** The parsed configuration the choice depends on (a slice of the gateway's Config). */
export type RuntimeConfig = { dispatchMode: "loader" | "namespace"; invokeTimeoutMs: number };

/** `exports` is the worker's own entrypoints (ctx.exports): the loader hands TelemetrySink, Egress and LogTail to agents. */
export type RuntimeDeps = { env: RuntimeEnv; ctx: { readonly exports?: Cloudflare.Exports }; config: RuntimeConfig };

export function createRuntimeProvider({ env, ctx, config }: RuntimeDeps): RuntimeProvider {
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
    case "namespace":
      return createNamespaceRuntime({ env, invokeTimeoutMs: config.invokeTimeoutMs });
  }
}
