// The `host` mechanism of the Cloudflare runtime provider (DISPATCH_MODE=host, what `npm run dev`
// uses): the Worker Loader runs in a separate Worker process, the agent host (src/agent-host/,
// wrangler.host.toml), reached through the AGENT_HOST service binding across `wrangler dev`
// sessions. A runaway agent then blocks the host's thread, not the gateway's: the gateway's
// timers keep running, so deploy checks and invocations end at their deadlines, and every other
// route keeps answering while a watchdog (scripts/lib/agent-host.ts) restarts the host.
// docs/local-isolation.md has the design and the residual risk.
import { DEPLOY_CHECK_TIMEOUT_MS } from "../loader";
import { type InvokeTarget, RuntimeError, type RuntimeLimits, type RuntimeProvider } from "../types";
import { type AgentHostApi, type HostFailure, isHostFailure } from "./protocol";

/**
 * How much longer than the host's own deploy check the gateway waits: the host's timer cannot fire
 * while a module's top level loops on its thread, so this one is the one that ends such a deploy.
 */
const DEPLOY_CHECK_MARGIN_MS = 1_000;

function fromFailure({ hostFailure: f }: HostFailure): RuntimeError {
  return new RuntimeError(f.code, f.message, f.retryable, { fault: f.fault });
}

/**
 * What the transport threw: the host is not running, is restarting, or its process was killed
 * mid-call ("Network connection lost", the dev registry's "Couldn't find…"). "throttled" is the
 * code the gateway answers with 503 upstream_unavailable and a Retry-After.
 */
function hostUnreachable(err: unknown): RuntimeError {
  const message = err instanceof Error ? err.message : String(err);
  return new RuntimeError("throttled", `the agent host is not answering (restarting?): ${message.slice(0, 300)}`, true, {
    cause: err,
    fault: "platform",
  });
}

function deployTimeout(): RuntimeError {
  return new RuntimeError(
    "timeout",
    `the bundle's top-level code did not finish within ${DEPLOY_CHECK_TIMEOUT_MS} ms: move slow work into the fetch handler`,
    false,
  );
}

export function createHostRuntime(host: AgentHostApi, opts: { deployCheckTimeoutMs?: number } = {}): RuntimeProvider {
  const deployWaitMs = (opts.deployCheckTimeoutMs ?? DEPLOY_CHECK_TIMEOUT_MS) + DEPLOY_CHECK_MARGIN_MS;
  return {
    async deploy(bundle) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), deployWaitMs);
      });
      let result: Awaited<ReturnType<AgentHostApi["deploy"]>> | "timeout";
      try {
        result = await Promise.race([host.deploy(bundle), timedOut]);
      } catch (err) {
        throw hostUnreachable(err);
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
      if (result === "timeout") throw deployTimeout();
      if (isHostFailure(result)) throw fromFailure(result);
    },

    async invoke(target: InvokeTarget, request: Request, opts: { limits: RuntimeLimits }) {
      // The caller (services/invoke) bounds this with its deadline, as with the in-process loader;
      // here that deadline can fire even when the agent never yields, because it is another process.
      const { deploymentId, userId, agentId, scriptName } = target;
      let result: Response | HostFailure;
      try {
        result = await host.invoke({ deploymentId, userId, agentId, scriptName }, request, opts.limits, () =>
          target.loadBundle(),
        );
      } catch (err) {
        throw hostUnreachable(err);
      }
      if (isHostFailure(result)) throw fromFailure(result);
      return result;
    },

    async remove() {
      // As with the in-process loader: isolates are evicted when idle, nothing is stored.
    },
  };
}
