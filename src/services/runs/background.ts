// A background run (POST /v1/agents/:agentId/runs), driven by its own Durable Object
// (entrypoints/run-recorder.ts) from an alarm. The gateway routed the call, admitted it against
// the quota, started the session's turn and handed over the call as plain data
// (services/invoke/invoke.ts startBackgroundRun); here the same code the gateway uses for a /stream
// run calls the agent, relays its stream (invoke/sse.ts) and drives the run (drive.ts), with the
// Durable Object itself as the recorder. The Durable Object, unlike the gateway's `waitUntil`
// after a 202, is not cut off seconds after the answer (docs/api.md, "Who drives a run").
import { and, eq } from "drizzle-orm";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { deployments } from "../../db/schema";
import type { ArtifactBucket } from "../deployments/artifacts";
import { loadDeploymentBundle } from "../deployments/bundle";
import { type CallDeps, callForRun, invocationOf, runHandle } from "../invoke/invoke";
import type { RecordInvocationDeps } from "../metering/record-invocation";
import { turnReleaser } from "../sessions/resolve";
import type { SessionKeepers } from "../sessions/types";
import type { BackgroundRunSpec, CallSpec, RunRecorderApi, RunStart } from "./types";

/** What the Durable Object builds from its own env (compose.ts) to close a run. */
export type CloseRunDeps = RecordInvocationDeps & { sessions: SessionKeepers };
/** …and to call the agent. */
export type BackgroundRunDeps = CloseRunDeps &
  Pick<CallDeps, "runtime"> & { keyring: Keyring; artifacts?: ArtifactBucket };

/**
 * Calls the agent for the run and drives it to its end, recording into `recorder` (the Durable
 * Object itself). Resolves once the run has ended, its session turn is released and its
 * measurement is sent: the alarm that awaits this keeps the Durable Object at work until then.
 * `deadline`: when the call and its stream end at the latest (the run's, or sooner: the alarm's).
 */
export async function driveBackgroundRun(
  deps: BackgroundRunDeps,
  spec: BackgroundRunSpec,
  run: RunStart,
  recorder: RunRecorderApi,
  deadline: number,
): Promise<void> {
  const work = pendingWork();
  const callDeps: CallDeps = { ...deps, timeoutMs: spec.call.timeoutMs, waitUntil: work.add };
  const inv = invocationOf(callDeps, spec.call, {
    turn: spec.sessionTurn ? { release: turnReleaser(deps.sessions, spec.sessionTurn) } : undefined,
    deadline,
    loadBundle: () => bundleOf(deps, spec.call),
  });
  // The record exists already (startBackground made it): nothing to begin, nothing to wait for.
  const handle = runHandle(inv, recorder, run.id, () => {}, Promise.resolve());
  try {
    await callForRun(callDeps, inv, handle, false);
  } catch {
    // A call that failed before the agent's stream started has ended the run (one `error` event).
  }
  await work.settled();
}

/**
 * Closes a background run that will not call the agent (again): it was cancelled before its alarm
 * ran, its setup failed, or an earlier attempt of the alarm was interrupted (the agent may have
 * been called: it is not called twice). The session's turn ends (counted only if the agent was
 * reached). A run the agent saw is measured with how it ended (once: measurements are deduplicated
 * by request id, so an attempt that was measured already is not counted again); a run the agent
 * never saw is not measured, nor billed, like a call the gateway refused.
 */
export async function closeBackgroundRun(
  deps: CloseRunDeps,
  spec: BackgroundRunSpec,
  end: { reachedAgent: boolean; ok: boolean; errorCode?: string },
): Promise<void> {
  const work = pendingWork();
  if (spec.sessionTurn) work.add(turnReleaser(deps.sessions, spec.sessionTurn)(end.reachedAgent));
  if (end.reachedAgent) {
    const inv = invocationOf({ db: deps.db, usageQueue: deps.usageQueue, waitUntil: work.add }, spec.call, {
      loadBundle: () => Promise.reject(new Error("a closed run calls nobody")),
    });
    inv.measure({ ok: end.ok, ...(end.ok ? {} : { errorCode: end.errorCode }), bytesOut: 0 });
  }
  await work.settled();
}

/**
 * The deployment's bundle, for a cold start of its script: its row is read again here (tenant-
 * scoped), so the run's storage never holds the deployment's sealed secrets.
 */
async function bundleOf(deps: { db: Db; keyring: Keyring; artifacts?: ArtifactBucket }, call: CallSpec) {
  const row = await deps.db
    .select()
    .from(deployments)
    .where(and(eq(deployments.id, call.deployment.id), eq(deployments.userId, call.userId)))
    .limit(1)
    .get();
  if (!row) throw new Error(`deployment ${call.deployment.id} no longer exists`);
  return loadDeploymentBundle(deps, row);
}

/** The Durable Object's `waitUntil` for one run: everything handed to it is awaited by `settled`. */
function pendingWork() {
  const all: Promise<unknown>[] = [];
  return {
    add: (promise: Promise<unknown>) => {
      all.push(promise.catch(() => {}));
    },
    // Work added while waiting (the driver's appends, the measurement) is awaited too.
    settled: async () => {
      for (let i = 0; i < all.length; i++) await all[i];
    },
  };
}
