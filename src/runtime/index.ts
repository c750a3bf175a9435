// Chooses the dispatch mechanism from configuration (DISPATCH_MODE). Everything that runs user
// code asks this factory for the RuntimeProvider; nothing else touches LOADER or DISPATCHER.
import type { Config, Env } from "../env";
import { ConfigError } from "../lib/config-error";
import { createLoaderRuntime } from "./loader";
import { createNamespaceRuntime } from "./namespace/provider";
import type { RuntimeProvider } from "./types";

export type RuntimeDeps = { env: Env; ctx: ExecutionContext; config: Config };

export function createRuntimeProvider({ env, ctx, config }: RuntimeDeps): RuntimeProvider {
  switch (config.dispatchMode) {
    case "loader": {
      if (!env.LOADER) throw new ConfigError("DISPATCH_MODE=loader needs the LOADER (worker_loaders) binding");
      const sinks = ctx.exports;
      return createLoaderRuntime(env.LOADER, (props) => sinks.TelemetrySink({ props }));
    }
    case "namespace":
      return createNamespaceRuntime({ env, invokeTimeoutMs: config.invokeTimeoutMs });
  }
}
