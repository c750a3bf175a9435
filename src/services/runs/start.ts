// Starting a run, in the gateway: /stream (a client attached) and POST /v1/agents/:agentId/runs
// (a background run). Routing, the quota, the session's turn and the run's id are settled here
// (services/invoke/prepare.ts); then the call is handed to the run's Durable Object, which makes
// it and records the run (call.ts). The gateway never owns the agent's request: on Cloudflare its
// `waitUntil` is cut ≈30 s after its answer or its client's disconnect, and a run must outlive
// both (docs/api.md, "Who drives a run").
import { ApiError } from "../../lib/errors";
import { newId } from "../../lib/ids";
import { describeError, logError } from "../../lib/logger";
import { RUN_ID_HEADER } from "../invoke/call";
import type { InvokeRequest } from "../invoke/contract";
import { type InvokeDeps, type InvokeOptions, type PreparedCall, prepareInvocation } from "../invoke/prepare";
import type { RunCall, RunOpening, RunStart, RunView } from "./types";

/**
 * POST /v1/invoke/:agentId/stream: a run with a client attached. The answer is the run's event
 * stream (every event with its `id:`), header x-run-id names the run; a failure before the agent
 * answers is a problem as for a direct call (and the run records it).
 */
export async function streamAgentRun(
  deps: InvokeDeps,
  agentId: string,
  body: InvokeRequest,
  opts: InvokeOptions = {},
): Promise<Response> {
  const runId = newId("run");
  const recorder = deps.runs(runId);
  // Wakes the run's object while the call is routed and admitted, so creating it is not added to
  // the time to the first event.
  recorder.wake().catch(() => {});
  const prepared = await prepareInvocation(deps, agentId, body, true, opts, runId);
  const headers = { ...prepared.headers, [RUN_ID_HEADER]: runId };
  let opening: RunOpening;
  try {
    opening = await recorder.stream(runStartOf(prepared, runId), handover(prepared));
  } catch (err) {
    // The object could not take the run (nothing answered): its turn is free again, uncounted.
    await prepared.turn?.release(false);
    throw runUnavailable(runId, err, headers);
  }
  if ("problem" in opening) {
    const { code, detail, extra } = opening.problem;
    throw new ApiError(code, detail, { headers: { ...headers, ...opening.problem.headers }, extra });
  }
  return new Response(opening.stream, {
    status: 200,
    headers: { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
  });
}

/**
 * POST /v1/agents/:agentId/runs: a background run. Its Durable Object stores the call and makes it
 * from its alarm, after this request has answered 202.
 */
export async function startBackgroundRun(deps: InvokeDeps, agentId: string, body: InvokeRequest): Promise<RunView> {
  const runId = newId("run");
  const prepared = await prepareInvocation(deps, agentId, body, true, {}, runId);
  const start = runStartOf(prepared, runId);
  try {
    await deps.runs(runId).startBackground(start, handover(prepared));
  } catch (err) {
    // The answer may have been lost after the object took the run (a dropped connection): then the
    // run is on its way and this is its 202 (the turn stays held by it). A retry must not start it
    // twice.
    if (await runTaken(deps, runId)) return runViewOf(start);
    // Nothing was called: the turn is free again (not counted); the quota was admitted once, as for
    // any invocation the gateway refused after admitting it.
    await prepared.turn?.release(false);
    throw runUnavailable(runId, err);
  }
  return runViewOf(start);
}

function handover(prepared: PreparedCall): RunCall {
  return { call: prepared.spec, ...(prepared.turn ? { sessionTurn: prepared.turn.held } : {}) };
}

function runUnavailable(runId: string, err: unknown, headers?: Record<string, string>): ApiError {
  logError("run_start_failed", { runId, error: describeError(err) });
  return new ApiError("service_unavailable", "the run could not be started; try again", {
    headers: { ...headers, "retry-after": "1" },
  });
}

/** Whether the run's object holds the run (false also when it cannot be asked). */
async function runTaken(deps: InvokeDeps, runId: string): Promise<boolean> {
  try {
    return (await deps.runs(runId).get(deps.userId)) !== null;
  } catch {
    return false;
  }
}

/** The run's record: its deadline is the invoke timeout plus the stream's time limit from now. */
function runStartOf(prepared: PreparedCall, id: string): RunStart {
  const now = Date.now();
  return {
    id,
    userId: prepared.spec.userId,
    agentId: prepared.spec.agentId,
    deploymentId: prepared.deployment.id,
    createdAt: prepared.spec.startedAt,
    startedAt: now,
    deadline: now + prepared.spec.timeoutMs + prepared.spec.streamSeconds * 1000,
  };
}

function runViewOf(start: RunStart): RunView {
  return {
    id: start.id,
    agentId: start.agentId,
    deploymentId: start.deploymentId,
    status: "running",
    createdAt: start.createdAt,
    startedAt: start.startedAt,
    endedAt: null,
  };
}
