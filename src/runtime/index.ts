// Chooses the dispatch mechanism from configuration (DISPATCH_MODE). Everything that runs user
// code asks this factory for the RuntimeProvider; nothing else touches LOADER or DISPATCHER.
import { type Config, ConfigError, type Env } from "../env";
import { createLoaderRuntime } from "./loader";
import { createNamespaceRuntime } from "./namespace";
import type { RuntimeProvider } from "./types";

/** `exports` is the worker's own entrypoints (ctx.exports): the loader hands TelemetrySink to agents. */
export type RuntimeDeps = { env: Env; ctx: { readonly exports?: Cloudflare.Exports }; config: Config };

export function createRuntimeProvider({ env, ctx, config }: RuntimeDeps): RuntimeProvider {
  switch (config.dispatchMode) {
    case "loader": {
      if (!env.LOADER) throw new ConfigError("DISPATCH_MODE=loader needs the LOADER (worker_loaders) binding");
      const sinks = ctx.exports;
      if (!sinks)
        throw new ConfigError("DISPATCH_MODE=loader needs the worker's ctx.exports (compatibility_date 2025 or later)");
      return createLoaderRuntime(env.LOADER, (props) => sinks.TelemetrySink({ props }));
    }
    case "namespace":
      return createNamespaceRuntime({ env });
  }
}
