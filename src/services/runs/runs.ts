// Reading, following, cancelling and waiting for runs. A run is found through its Durable Object
// and belongs to the user who started it: anyone else (or an API key restricted to other agents)
// gets the same 404 as for a run that does not exist.
import { ApiError } from "../../lib/errors";
import { isIdOf } from "../../lib/ids";
import {
  MAX_RUN_WAIT_SECONDS,
  type RunRecorderApi,
  type RunRecorders,
  type RunView,
  type RunWaitResult,
} from "./types";

export type RunDeps = {
  runs: RunRecorders;
  userId: string;
  /** Whether the caller may see this agent's runs (an API key may be restricted to some agents). */
  mayUseAgent: (agentId: string) => boolean;
};

export function runNotFound(runId: string): ApiError {
  return new ApiError("not_found", `run ${runId} not found`);
}

function visible<T extends { run: RunView } | RunView>(deps: RunDeps, runId: string, found: T | null): T {
  const view: RunView | null = found && ("run" in found ? found.run : (found as RunView));
  if (!found || !view || !deps.mayUseAgent(view.agentId)) throw runNotFound(runId);
  return found;
}

function recorder(deps: RunDeps, runId: string) {
  if (!isIdOf("run", runId)) throw runNotFound(runId);
  return deps.runs(runId);
}

/**
 * The run, as its owner sees it. (A run is known to its Durable Object from before its id is
 * handed out: the object holds it in memory until its record is stored after the first event.)
 */
async function lookUp(deps: RunDeps, rec: RunRecorderApi, runId: string): Promise<RunView> {
  return visible(deps, runId, await rec.get(deps.userId));
}

export async function getRun(deps: RunDeps, runId: string): Promise<RunView> {
  return lookUp(deps, recorder(deps, runId), runId);
}

/** Cancels a running run: the agent's call is aborted and the run ends `cancelled`; 409 if it had ended. */
export async function cancelRun(deps: RunDeps, runId: string): Promise<RunView> {
  const rec = recorder(deps, runId);
  // Checked before cancelling, so a key that may not see the run cannot cancel it either.
  await lookUp(deps, rec, runId);
  const result = visible(deps, runId, await rec.cancel(deps.userId));
  if (result.alreadyEnded) {
    throw new ApiError("run_ended", `run ${runId} has already ended (${result.run.status})`, {
      extra: { status: result.run.status },
    });
  }
  return result.run;
}

/** The run's events after `after` (SSE, each with its id), then live ones until the run ends. */
export async function runEvents(deps: RunDeps, runId: string, after: number): Promise<ReadableStream<Uint8Array>> {
  const rec = recorder(deps, runId);
  await lookUp(deps, rec, runId);
  const stream = await rec.events(deps.userId, after);
  if (!stream) throw runNotFound(runId);
  return stream;
}

/** Waits up to `timeoutSeconds` (at most 60) for the run to end. */
export async function waitForRun(deps: RunDeps, runId: string, timeoutSeconds: number): Promise<RunWaitResult> {
  const rec = recorder(deps, runId);
  await lookUp(deps, rec, runId);
  const seconds = Math.min(Math.max(0, timeoutSeconds), MAX_RUN_WAIT_SECONDS);
  return visible(deps, runId, await rec.wait(deps.userId, seconds * 1000));
}
