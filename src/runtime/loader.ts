// The Worker Loader mechanism (DISPATCH_MODE=loader): each deployment's stored module runs in its
// own isolate, named by the deployment id, with the env the namespace upload would inject and its
// outbound network through the gateway's egress door (`globalOutbound`). The loader caches isolates by name, so the bundle
// (artifact read + secret decryption) is only loaded on a cold start.
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeLimits,
  type RuntimeModule,
  type RuntimeProvider,
} from "./types";
import {
  DEPLOY_CHECK_ENTRYPOINT,
  loadFailureMessage,
  NO_FETCH_HANDLER_MESSAGE,
  PLATFORM_MAIN_MODULE,
  plainUserEnv,
  platformMainModule,
  secretUserEnv,
  TELEMETRY_BINDING,
  type TelemetryBindingProps,
  telemetryBindingProps,
  userScriptCompatibilityFlags,
} from "./user-script";

/**
 * Makes the TELEMETRY binding for a deployment: the caller (src/runtime/index.ts) gives a loopback
 * binding to the gateway's own TelemetrySink entrypoint, `ctx.exports.TelemetrySink({ props })`.
 */
export type TelemetryBindingFactory = (props: TelemetryBindingProps) => Fetcher;

/**
 * Makes the loaded worker's globalOutbound: every fetch() it makes goes to the gateway's Egress
 * entrypoint, `ctx.exports.Egress({ props })`, with the same identity props as TELEMETRY. Without
 * one (tests of the loader alone), the worker has no network at all.
 */
export type EgressBindingFactory = (props: TelemetryBindingProps) => Fetcher;

/**
 * Makes the loaded worker's Tail Worker: the runtime hands it each invocation's trace (console.*
 * lines, uncaught exceptions, outcome) after the invocation; the caller gives the gateway's
 * LogTail entrypoint, `ctx.exports.LogTail({ props })`, with the same identity props.
 */
export type TailBindingFactory = (props: TelemetryBindingProps) => Fetcher;

/** The optional bindings of a loaded worker (tests of the loader alone go without them). */
export type LoaderExtras = { egress?: EgressBindingFactory; tail?: TailBindingFactory };

/**
 * The deploy check: the bundle loads (its top-level evaluation succeeds within
 * DEPLOY_CHECK_TIMEOUT_MS) and its default export has a fetch handler. It sends the user's code
 * no request: loading the isolate evaluates the platform's main module (user-script.ts), which
 * imports the user's, asserts the fetch handler at its top level, and answers the check over RPC.
 */
export const DEPLOY_CHECK_TIMEOUT_MS = 10_000;

export function loaderWorkerCode(
  bundle: DeploymentBundle,
  telemetry: TelemetryBindingFactory,
  { egress, tail }: LoaderExtras = {},
): WorkerLoaderWorkerCode {
  return {
    compatibilityDate: bundle.compatibilityDate,
    compatibilityFlags: userScriptCompatibilityFlags(bundle),
    mainModule: PLATFORM_MAIN_MODULE,
    // The object form names the module type: the loader infers it only for names ending in .js.
    modules: {
      [PLATFORM_MAIN_MODULE]: { js: platformMainModule(bundle.mainModuleName) },
      ...Object.fromEntries(bundle.modules.map((m) => [m.name, loaderModule(m)])),
    },
    env: {
      ...secretUserEnv(bundle),
      ...plainUserEnv(bundle),
      [TELEMETRY_BINDING]: telemetry(telemetryBindingProps(bundle)),
    },
    globalOutbound: egress ? egress(telemetryBindingProps(bundle)) : null,
    ...(tail ? { tails: [tail(telemetryBindingProps(bundle))] } : {}),
  };
}

/** One module in the loader's object form, which names its type (it infers it only from .js names). */
function loaderModule(m: RuntimeModule): WorkerLoaderModule {
  switch (m.type) {
    case "esm":
      return { js: m.content };
    case "cjs":
      return { cjs: m.content };
    case "text":
      return { text: m.content };
    case "json":
      return { json: JSON.parse(m.content) };
    case "data":
      return { data: m.content.slice().buffer };
    case "wasm":
      return { wasm: m.content };
  }
}

/** The error's message on one line (load errors span several), bounded in length. */
function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, " ").trim().slice(0, 1000);
}

/** Classifies what the loader or the user script threw. Aborts (our own timeouts) pass through. */
export function classifyLoaderError(err: unknown): unknown {
  if (err instanceof RuntimeError) return err;
  if (err instanceof Error && err.name === "AbortError") return err;
  const message = messageOf(err);
  if (/^Failed to start Worker/i.test(message) || /requires compatibility date/i.test(message)) {
    return new RuntimeError("load_failed", message, false, { cause: err });
  }
  if (/hung and would never generate a response/i.test(message)) {
    return new RuntimeError("timeout", message, false, { cause: err });
  }
  if (/exceeded (its )?(CPU|memory|resource)|limit exceeded|too many subrequests/i.test(message)) {
    return new RuntimeError("limit_exceeded", message, false, { cause: err });
  }
  if (/overloaded|Network connection lost|internal error/i.test(message)) {
    return new RuntimeError("unavailable", message, true, { cause: err });
  }
  return new RuntimeError("exception", message, false, { cause: err });
}

export function createLoaderRuntime(
  loader: WorkerLoader,
  telemetry: TelemetryBindingFactory,
  extras: LoaderExtras = {},
): RuntimeProvider {
  return {
    async deploy(bundle) {
      const loaded = loader.get(bundle.deploymentId, () => loaderWorkerCode(bundle, telemetry, extras));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new RuntimeError(
                "timeout",
                `the bundle's top-level code did not finish within ${DEPLOY_CHECK_TIMEOUT_MS} ms: move slow work into the fetch handler`,
                false,
              ),
            ),
          DEPLOY_CHECK_TIMEOUT_MS,
        );
      });
      let result: { hasFetch: boolean };
      try {
        const entry = loaded.getEntrypoint(DEPLOY_CHECK_ENTRYPOINT) as unknown as {
          check(): Promise<{ hasFetch: boolean }>;
        };
        result = await Promise.race([entry.check(), timedOut]);
      } catch (err) {
        if (err instanceof RuntimeError) throw err;
        const classified = classifyLoaderError(err);
        if (classified instanceof RuntimeError && classified.retryable) throw classified;
        throw new RuntimeError("load_failed", loadFailureMessage(messageOf(err)), false, { cause: err });
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
      if (!result.hasFetch) throw new RuntimeError("load_failed", NO_FETCH_HANDLER_MESSAGE, false);
    },

    async invoke(target: InvokeTarget, request: Request, opts: { limits: RuntimeLimits }) {
      // A cold start loads the bundle (D1 reads, decryption) inside the loader's callback; its
      // failure is the platform's, whatever the loader makes of the exception it rethrows.
      let bundleFailure: { err: unknown } | undefined;
      const loaded = loader.get(target.deploymentId, async () => {
        try {
          return loaderWorkerCode(await target.loadBundle(), telemetry, extras);
        } catch (err) {
          bundleFailure = { err };
          throw err;
        }
      });
      try {
        return await loaded.getEntrypoint(undefined, { limits: opts.limits }).fetch(request);
      } catch (err) {
        if (bundleFailure) {
          throw new RuntimeError(
            "unavailable",
            `loading the deployment failed: ${messageOf(bundleFailure.err)}`,
            false,
            {
              cause: bundleFailure.err,
            },
          );
        }
        throw classifyLoaderError(err);
      }
    },

    async remove() {
      // Loader isolates are evicted by the runtime when idle; there is nothing stored to remove.
    },
  };
}
