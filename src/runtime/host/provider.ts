// The `host` mechanism of the Cloudflare runtime provider (DISPATCH_MODE=host, what `npm run dev`
// uses): the Worker Loader runs in a separate Worker process, the agent host (src/agent-host/,
// wrangler.host.toml), reached through the AGENT_HOST service binding across `wrangler dev`
// sessions. A runaway agent then blocks the host's thread, not the gateway's: the gateway's
// timers keep running, so deploy checks and invocations end at their deadlines, and every other
// route keeps answering while a watchdog (scripts/lib/agent-host.ts) restarts the host.
// docs/local-isolation.md has the design and the residual risk.
import { describeError, logError } from "../../lib/logger";
import { DEPLOY_CHECK_TIMEOUT_MS } from "../loader";
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeLimits,
  type RuntimeProvider,
} from "../types";
import { hostCalls, PING_EVERY_MS } from "./blame";
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
  return new RuntimeError("throttled", `the agent host is not answering (restarting?): ${errorMessage(err)}`, true, {
    cause: err,
    fault: "platform",
  });
}

function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 300);
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
/** The longest a call is watched (a stream may last an hour on the enterprise tier). */
const WATCH_AT_MOST_MS = 2 * 60 * 60_000;
/** How long a deploy waits for the host to come back after it died under the deploy check. */
const HOST_BACK_WAIT_MS = 30_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How long a ping may take before the host is taken for gone (a free host answers in milliseconds). */
const HOST_GONE_AFTER_MS = 1_000;

/** Whether the host answers a ping now: after a body broke, it tells the agent's own error from a lost host. */
async function hostAnswers(host: AgentHostApi): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const gone = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), HOST_GONE_AFTER_MS);
  });
  try {
    return await Promise.race([host.ping().then(() => true), gone]);
  } catch {
    return false;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/**
 * The host died under this call while another agent held its thread (or for no agent's doing at
 * all): the platform failed to run this agent, which is not its timeout. The caller is told only
 * that the platform failed; the detail goes to the operator's log line.
 */
function lostWithHost(err: unknown): RuntimeError {
  return new RuntimeError(
    "unavailable",
    `the agent host was restarted while this invocation ran (another agent held it, or the host stopped): ${errorMessage(err)}`,
    false,
    { cause: err, fault: "platform" },
  );
}

/**
 * `body`, passed through chunk by chunk (so a stream stays incremental and cancelling it reaches
 * the agent's stream), calling `done` once when it ends however it ends; a read that fails is
 * rethrown as what `judge` makes of it.
 */
function watchBody(
  body: ReadableStream<Uint8Array>,
  done: () => void,
  judge: (err: unknown) => Promise<unknown>,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    done();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        const judged = await judge(err);
        end();
        controller.error(judged);
        return;
      }
      if (chunk.done) {
        end();
        controller.close();
      } else {
        controller.enqueue(chunk.value);
      }
    },
    cancel(reason) {
      end();
      return reader.cancel(reason);
    },
  });
}

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
    // A deploy check can be what stalls the host: it takes part in the attribution of lost
    // invocations like any call (src/runtime/host/blame.ts), until the host's answer settles (a
    // check past the gateway's deadline may still hold the host's thread).
    const ping = () => host.ping();
    const ticket = hostCalls.begin(ping);
    const settled = () => {
      clearInterval(pinger);
      hostCalls.end(ticket);
    };
    const pinger = setInterval(() => {
      if (Date.now() - ticket.sentAt > WATCH_AT_MOST_MS) settled();
      else hostCalls.maybePing(ping);
    }, PING_EVERY_MS);
    const call = host.deploy(bundle);
    call.then(settled, () => {
      // Settles the verdict for the invocations lost with it while this check still counts as in flight.
      if (Date.now() - ticket.sentAt >= LOST_MID_CALL_MS) hostCalls.blame(ticket);
      settled();
    });
    let result: Awaited<ReturnType<AgentHostApi["deploy"]>> | "timeout";
    try {
      result = await Promise.race([call, timedOut]);
    } catch (err) {
      if (Date.now() - ticket.sentAt < LOST_MID_CALL_MS) throw hostUnreachable(err);
      return "lost";
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
      // Around the call, and while its answer streams, the host is pinged: whether it still answered
      // is how a call lost with a restarted host is attributed to its agent or to the platform
      // (src/runtime/host/blame.ts).
      const ping = () => host.ping();
      const ticket = hostCalls.begin(ping);
      const finish = () => {
        clearInterval(pinger);
        hostCalls.end(ticket);
      };
      const pinger = setInterval(() => {
        // A body nobody reads or cancels must not keep this going for ever.
        if (Date.now() - ticket.sentAt > WATCH_AT_MOST_MS) finish();
        else hostCalls.maybePing(ping);
      }, PING_EVERY_MS);
      let result: Response | HostFailure;
      try {
        result = await host.invoke({ deploymentId, userId, agentId, scriptName }, forwarded, limits, () =>
          target.loadBundle(),
        );
      } catch (err) {
        try {
          if (Date.now() - ticket.sentAt < LOST_MID_CALL_MS) throw hostUnreachable(err);
          if (hostCalls.blame(ticket) === "platform") throw lostWithHost(err);
        } finally {
          finish();
        }
        // This agent held the host's thread when the watchdog restarted it. What the caller sees is
        // what a hung agent gets with the in-process loader, 504 at its deadline, not an early 503
        // that invites a retry.
        await sleep(Math.max(0, ticket.sentAt + invokeTimeoutMs - Date.now()));
        throw new RuntimeError("timeout", "the agent host was restarted while this agent held it", false, {
          cause: err,
          fault: "agent",
        });
      }
      if (isHostFailure(result)) {
        finish();
        throw fromHostFailure(result);
      }
      if (!result.body || request.signal.aborted) {
        // No body, or an answer the caller stopped waiting for (its deadline passed): nothing to watch.
        finish();
        if (result.body) await result.body.cancel().catch(() => {});
        return result;
      }
      // The answer streams from the host: the call stays in flight until its body ends, and a body
      // that breaks because the host went away is judged like a call lost before its answer.
      const body = watchBody(result.body, finish, async (err) => {
        if (await hostAnswers(host)) return err; // the agent's own stream failed: the relay says so
        if (hostCalls.blame(ticket) !== "platform") return err;
        // Before its answer, services/invoke logs the platform's failure; mid-stream, the relay only
        // ends the stream, so the operator's line is written here.
        logError("invoke_platform_failure", { deploymentId, fault: "platform", error: describeError(err) });
        return lostWithHost(err);
      });
      return new Response(body, result);
    },

    async remove() {
      // As with the in-process loader: isolates are evicted when idle, nothing is stored.
    },
  };
}
