// Chooses the dispatch mechanism from configuration (DISPATCH_MODE). Everything that runs user
// code asks this factory for the RuntimeProvider; nothing else touches LOADER or DISPATCHER.
import { type Config, ConfigError, type Env } from "../env";
import { createLoaderRuntime } from "./loader";
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
      // The dispatch-namespace mechanism is built separately (issue 4) and plugs in here.
      throw new ConfigError("DISPATCH_MODE=namespace is not available in this build; use DISPATCH_MODE=loader");
  }
}
