// The Worker Loader mechanism (DISPATCH_MODE=loader): each deployment's stored module runs in its
// own isolate, named by the deployment id, with the env the namespace upload would inject and its
// outbound network through the gateway's egress door (`globalOutbound`). The loader caches isolates by name, so the bundle
// (artifact read + secret decryption) is only loaded on a cold start.
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeLimits,
  type RuntimeProvider,
} from "./types";
import {
  plainUserEnv,
  secretUserEnv,
  TELEMETRY_BINDING,
  type TelemetryBindingProps,
  telemetryBindingProps,
  USER_SCRIPT_COMPATIBILITY_FLAGS,
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
 * The deploy probe: `GET /` with this header. Any HTTP answer (whatever its status) proves the
 * module loaded and its fetch handler runs; an exception (a throw at load time, no fetch handler,
 * a handler that throws) or no answer within the probe timeout fails the deployment.
 */
export const PROBE_HEADER = "x-webhost-probe";
export const PROBE_TIMEOUT_MS = 10_000;

const INTERNAL_ORIGIN = "https://agent.webhost.internal";

export function loaderWorkerCode(
  bundle: DeploymentBundle,
  telemetry: TelemetryBindingFactory,
  egress?: EgressBindingFactory,
): WorkerLoaderWorkerCode {
  return {
    compatibilityDate: bundle.compatibilityDate,
    compatibilityFlags: [...USER_SCRIPT_COMPATIBILITY_FLAGS],
    mainModule: bundle.mainModuleName,
    // The object form names the module type: the loader infers it only for names ending in .js.
    modules: { [bundle.mainModuleName]: { js: bundle.moduleCode } },
    env: {
      ...secretUserEnv(bundle),
      ...plainUserEnv(bundle),
      [TELEMETRY_BINDING]: telemetry(telemetryBindingProps(bundle)),
    },
    globalOutbound: egress ? egress(telemetryBindingProps(bundle)) : null,
  };
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
  egress?: EgressBindingFactory,
): RuntimeProvider {
  return {
    async deploy(bundle) {
      const stub = loader.get(bundle.deploymentId, () => loaderWorkerCode(bundle, telemetry, egress));
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), PROBE_TIMEOUT_MS);
      try {
        const res = await stub.getEntrypoint().fetch(`${INTERNAL_ORIGIN}/`, {
          method: "GET",
          headers: { [PROBE_HEADER]: "1" },
          signal: abort.signal,
        });
        await res.body?.cancel();
      } catch (err) {
        if (abort.signal.aborted) {
          throw new RuntimeError(
            "timeout",
            `the module did not answer the deploy probe within ${PROBE_TIMEOUT_MS} ms`,
            false,
          );
        }
        const classified = classifyLoaderError(err);
        if (classified instanceof RuntimeError && classified.retryable) throw classified;
        throw new RuntimeError("load_failed", `the module failed the deploy probe: ${messageOf(err)}`, false, {
          cause: err,
        });
      } finally {
        clearTimeout(timer);
      }
    },

    async invoke(target: InvokeTarget, request: Request, opts: { limits: RuntimeLimits }) {
      // A cold start loads the bundle (D1 reads, decryption) inside the loader's callback; its
      // failure is the platform's, whatever the loader makes of the exception it rethrows.
      let bundleFailure: { err: unknown } | undefined;
      const stub = loader.get(target.deploymentId, async () => {
        try {
          return loaderWorkerCode(await target.loadBundle(), telemetry, egress);
        } catch (err) {
          bundleFailure = { err };
          throw err;
        }
      });
      try {
        return await stub.getEntrypoint(undefined, { limits: opts.limits }).fetch(request);
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
