// The `host` mechanism of the Cloudflare runtime provider (DISPATCH_MODE=host, what `npm run dev`
// uses): the Worker Loader runs in a separate Worker process, the agent host (src/agent-host/,
// wrangler.host.toml), reached through the AGENT_HOST service binding across `wrangler dev`
// sessions. A runaway agent then blocks the host's thread, not the gateway's: the gateway's
// timers keep running, so deploy checks and invocations end at their deadlines, and every other
// route keeps answering while a watchdog (scripts/lib/agent-host.ts) restarts the host.
// docs/local-isolation.md has the design and the residual risk.
import { DEPLOY_CHECK_TIMEOUT_MS } from "../loader";
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeLimits,
  type RuntimeProvider,
} from "../types";
import { type AgentHostApi, fromHostFailure, type HostFailure, isHostFailure } from "./protocol";

/**
 * How much longer than the host's own deploy check the gateway waits: the host's timer cannot fire
 * while a module's top level loops on its thread, so this one is the one that ends such a deploy.
 */
const DEPLOY_CHECK_MARGIN_MS = 1_000;

/**
 * What the transport threw: the host is not running, is restarting, or its process was killed
 * mid-call ("Network connection lost", the dev registry's "Couldn't find…"). "throttled" is the
 * code the gateway answers with 503 upstream_unavailable and a Retry-After.
 */
function hostUnreachable(err: unknown): RuntimeError {
  const message = err instanceof Error ? err.message : String(err);
  return new RuntimeError(
    "throttled",
    `the agent host is not answering (restarting?): ${message.slice(0, 300)}`,
    true,
    {
      cause: err,
      fault: "platform",
    },
  );
}

function deployTimeout(): RuntimeError {
  return new RuntimeError(
    "timeout",
    `the bundle's top-level code did not finish within ${DEPLOY_CHECK_TIMEOUT_MS} ms: move slow work into the fetch handler`,
    false,
  );
}

/**
 * The host's process ended while it ran this bundle's top-level code, twice: the watchdog restarts
 * a host that stops answering, so this is what a loop at a module's top level looks like when the
 * watchdog is quicker than the deploy check's own deadline.
 */
function killedDuringCheck(): RuntimeError {
  return new RuntimeError(
    "timeout",
    "the bundle's top-level code did not finish: the agent host stopped answering while it ran (a loop at the top level?); move slow work into the fetch handler",
    false,
  );
}

/** A transport failure after this long in flight means the host died under the call, not before it. */
const LOST_MID_CALL_MS = 500;
/** How long a deploy waits for the host to come back after it died under the deploy check. */
const HOST_BACK_WAIT_MS = 30_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function createHostRuntime(
  host: AgentHostApi,
  opts: { invokeTimeoutMs: number; deployCheckTimeoutMs?: number },
): RuntimeProvider {
  const deployWaitMs = (opts.deployCheckTimeoutMs ?? DEPLOY_CHECK_TIMEOUT_MS) + DEPLOY_CHECK_MARGIN_MS;
  const invokeTimeoutMs = opts.invokeTimeoutMs;

  /** One deploy check, bounded by the gateway's own timer; "lost" when the host died under it. */
  async function checkOnce(bundle: DeploymentBundle): Promise<"ok" | "lost"> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), deployWaitMs);
    });
    const started = Date.now();
    let result: Awaited<ReturnType<AgentHostApi["deploy"]>> | "timeout";
    try {
      result = await Promise.race([host.deploy(bundle), timedOut]);
    } catch (err) {
      if (Date.now() - started >= LOST_MID_CALL_MS) return "lost";
      throw hostUnreachable(err);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
    if (result === "timeout") throw deployTimeout();
    if (isHostFailure(result)) throw fromHostFailure(result);
    return "ok";
  }

  return {
    async deploy(bundle) {
      if ((await checkOnce(bundle)) === "ok") return;
      // The host died while it evaluated this bundle: perhaps another agent's runaway made the
      // watchdog restart it. Once it is back, check again; dying a second time is this bundle's doing.
      const until = Date.now() + HOST_BACK_WAIT_MS;
      for (;;) {
        try {
          if ((await checkOnce(bundle)) === "ok") return;
          throw killedDuringCheck();
        } catch (err) {
          const hostDown = err instanceof RuntimeError && err.code === "throttled";
          if (!hostDown || Date.now() > until) throw err;
          await sleep(500);
        }
      }
    },

    async invoke(target: InvokeTarget, request: Request, { limits }: { limits: RuntimeLimits }) {
      // The caller (services/invoke) bounds this with its deadline, as with the in-process loader;
      // here that deadline fires even when the agent never yields, because the agent runs in
      // another process. The request's AbortSignal cannot cross RPC: an abort before the answer
      // arrives only stops the gateway waiting; once the answer streams, cancelling its body
      // reaches the agent's stream as with the in-process loader.
      const { deploymentId, userId, agentId, scriptName } = target;
      const forwarded = new Request(request, { signal: null });
      const started = Date.now();
      let result: Response | HostFailure;
      try {
        result = await host.invoke({ deploymentId, userId, agentId, scriptName }, forwarded, limits, () =>
          target.loadBundle(),
        );
      } catch (err) {
        if (Date.now() - started < LOST_MID_CALL_MS) throw hostUnreachable(err);
        // The host died under this invocation: the watchdog restarted it because an agent (likely
        // this one) stopped answering. What the caller sees is what a hung agent gets with the
        // in-process loader, 504 at its deadline, not an early 503 that invites a retry.
        await sleep(Math.max(0, started + invokeTimeoutMs - Date.now()));
        throw new RuntimeError("timeout", "the agent host was restarted while this invocation ran", false, {
          cause: err,
          fault: "agent",
        });
      }
      if (isHostFailure(result)) throw fromHostFailure(result);
      return result;
    },

    async remove() {
      // As with the in-process loader: isolates are evicted when idle, nothing is stored.
    },
  };
}
