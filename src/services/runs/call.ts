// A run's call, made by the run's own Durable Object (entrypoints/run-recorder.ts), never by the
// gateway: the object owns the agent's request from before it is sent, so a client that goes away
// (or the gateway's request ending) does not end the run. The gateway routed the call, admitted it
// against the quota and started the session's turn (services/runs/start.ts), then handed the call
// over as plain data. Here the agent is called (invoke/call.ts), its stream relayed event by event
// (invoke/sse.ts) and the run driven (drive.ts), recorded into the object itself:
// - a /stream run (`attach`): the object answers the client's event stream to the gateway, which
//   relays it; the object goes on after that stream is cancelled;
// - a background run: the object's alarm makes the call and awaits the run's end.
import { and, eq } from "drizzle-orm";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { deployments } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import type { ArtifactBucket } from "../deployments/artifacts";
import { loadDeploymentBundle } from "../deployments/bundle";
import {
  beforeDeadline,
  type CallDeps,
  callAgent,
  type Invocation,
  invalidAnswer,
  invocationOf,
  MAX_AGENT_JSON_BYTES,
  readBounded,
  upstreamProblem,
} from "../invoke/call";
import { AgentResponseSchema } from "../invoke/contract";
import { adaptJsonToSse, type RelayEnd, relaySse } from "../invoke/sse";
import type { RecordInvocationDeps } from "../metering/record-invocation";
import { releaseAtTerminalEvent, turnReleaser } from "../sessions/resolve";
import type { SessionKeepers } from "../sessions/types";
import { driveRun } from "./drive";
import { sseBlock } from "./sse-blocks";
import {
  type CallSpec,
  type RunCall,
  type RunEnd,
  type RunOpening,
  type RunRecorderApi,
  type RunStart,
  runStatusFor,
} from "./types";

/** What the Durable Object builds from its own env (compose.ts) to close a run. */
export type CloseRunDeps = RecordInvocationDeps & { sessions: SessionKeepers };
/** …and to call the agent. */
export type RunCallDeps = CloseRunDeps & Pick<CallDeps, "runtime"> & { keyring: Keyring; artifacts?: ArtifactBucket };

/**
 * When the run's record is stored: `begin` stores it (idempotent), `started` settles once it is.
 * A /stream run stores it after its first event has left (drive.ts), so that event never waits for
 * the object's storage; a background run's record exists before its call.
 */
export type RecordGate = { begin: () => void; started: Promise<void> };

const RECORDED: RecordGate = { begin: () => {}, started: Promise.resolve() };

/**
 * Calls the agent for the run and starts driving it, recording into `recorder` (the Durable Object
 * itself). `opened` resolves to the client's event stream (`attach`) or null once the agent's
 * stream has started, or rejects with the problem when the call failed before (the run then ends
 * with one `error` event). `done` settles once the run has ended, its session turn is released
 * and its measurement sent. `deadline`: when the call and its stream end at the latest.
 */
export function callAndDrive(
  deps: RunCallDeps,
  spec: RunCall,
  run: RunStart,
  recorder: RunRecorderApi,
  opts: { deadline: number; attach: boolean; record?: RecordGate },
): { opened: Promise<ReadableStream<Uint8Array> | null>; done: Promise<void> } {
  const work = pendingWork();
  const callDeps: CallDeps = { ...deps, timeoutMs: spec.call.timeoutMs, waitUntil: work.add };
  const inv = invocationOf(callDeps, spec.call, {
    turn: spec.sessionTurn ? { release: turnReleaser(deps.sessions, spec.sessionTurn) } : undefined,
    deadline: opts.deadline,
    loadBundle: () => bundleOf(deps, spec.call),
  });
  const handle = runHandle(inv, recorder, run.id, opts.record ?? RECORDED);
  const opened = callForRun(callDeps, inv, handle, opts.attach);
  const done = opened.then(
    () => work.settled(),
    () => work.settled(),
  );
  return { opened, done };
}

/** A /stream run: the client's event stream, or the problem its call failed with before it started. */
export async function openAttachedRun(
  deps: RunCallDeps,
  spec: RunCall,
  run: RunStart,
  recorder: RunRecorderApi,
  record: RecordGate,
): Promise<{ opening: RunOpening; done: Promise<void> }> {
  const { opened, done } = callAndDrive(deps, spec, run, recorder, { deadline: run.deadline, attach: true, record });
  try {
    const stream = await opened;
    if (!stream) throw new Error("an attached run has a client stream");
    return { opening: { stream }, done };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const problem = { code: err.code, detail: err.detail, headers: err.headers, extra: err.extra };
    return { opening: { problem }, done };
  }
}

/** A background run (from the object's alarm): resolves once the run has ended and been closed. */
export async function driveBackgroundRun(
  deps: RunCallDeps,
  spec: RunCall,
  run: RunStart,
  recorder: RunRecorderApi,
  deadline: number,
): Promise<void> {
  // A call that failed before the agent's stream started has ended the run (one `error` event).
  await callAndDrive(deps, spec, run, recorder, { deadline, attach: false }).done;
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
  spec: RunCall,
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

/** A run as its driver sees it. */
type RunHandle = {
  id: string;
  recorder: RunRecorderApi;
  /** Stores the run's record (once; later calls do nothing). */
  begin: () => void;
  started: Promise<void>;
  cancelled: Promise<boolean>;
};

/**
 * The handle a run's driver uses: `started` settles once the run's record is stored (appends wait
 * for it); a cancel while the agent has not answered yet aborts the call itself.
 */
function runHandle(inv: Invocation, recorder: RunRecorderApi, id: string, record: RecordGate): RunHandle {
  const cancelled = recorder.untilCancelled();
  cancelled.catch(() => {});
  cancelled.then((yes) => yes && inv.abort.abort(new RunCancelled())).catch(() => {});
  return { id, recorder, begin: record.begin, started: record.started, cancelled };
}

class RunCancelled extends Error {}
class StreamCutOff extends Error {}

/**
 * Calls the agent for a run and hands its stream to the run's driver: the client's event stream
 * when `attach`, else null. A failure before the agent's stream starts ends the run (recorded as
 * one `error` event) and rejects with the problem. A session's turn ends with the run: before its
 * terminal event, or at once when the call fails.
 */
async function callForRun(deps: CallDeps, inv: Invocation, run: RunHandle, attach: boolean) {
  if (!inv.turn) return callAgentForRun(deps, inv, run, attach);
  try {
    return await callAgentForRun(deps, inv, run, attach);
  } catch (err) {
    await inv.turn.release(true);
    throw err;
  }
}

async function callAgentForRun(deps: CallDeps, inv: Invocation, run: RunHandle, attach: boolean) {
  const { abort, headers } = inv;
  const failRun = (err: ApiError): never => {
    inv.measure({ ok: false, errorCode: err.code, bytesOut: 0 });
    const cancelled = abort.signal.reason instanceof RunCancelled;
    const code = cancelled ? "cancelled" : err.code;
    const message = cancelled ? "the run was cancelled" : err.detail;
    const end: RunEnd = { status: runStatusFor({ ok: false, errorCode: code }), errorCode: code };
    run.begin();
    deps.waitUntil(
      run.started.then(() => run.recorder.append(1, [sseBlock("error", { code, message })], end)).catch(() => {}),
    );
    if (cancelled) throw new ApiError("run_ended", `run ${run.id} was cancelled before the agent answered`);
    throw err;
  };

  const called = await callAgent(deps, inv);
  if ("problem" in called) return failRun(called.problem);
  const { upstream, deadline } = called;

  let source: ReadableStream<Uint8Array>;
  const contentType = upstream.headers.get("content-type") ?? "";
  if (/^text\/event-stream/i.test(contentType) && upstream.body) {
    source = upstream.body;
  } else {
    // A JSON answer: read it whole, within the deadline, and adapt it to delta + done.
    let text: string;
    try {
      text = await beforeDeadline(readBounded(upstream, MAX_AGENT_JSON_BYTES), deadline, abort);
    } catch (err) {
      return failRun(upstreamProblem(err, inv.ref, headers));
    }
    let answer: ReturnType<typeof AgentResponseSchema.parse>;
    try {
      answer = AgentResponseSchema.parse(JSON.parse(text));
    } catch {
      return failRun(invalidAnswer(upstream, text, headers));
    }
    source = new Response(adaptJsonToSse(answer)).body as ReadableStream<Uint8Array>;
  }

  // Each event must complete within the invoke timeout, and the whole stream within the tier's
  // streamSeconds; the relay cancels the agent's body when it ends, and a stream the gateway
  // cut off (or a cancelled run) also aborts the call itself.
  let settle: (end: RelayEnd) => void = () => {};
  const relayEnd = new Promise<RelayEnd>((resolve) => {
    settle = resolve;
  });
  const relayed = relaySse(source, {
    idleTimeoutMs: deps.timeoutMs,
    // A run's record has a deadline: the stream ends by then even if it started late (an alarm).
    maxDurationMs: Math.min(inv.streamSeconds * 1000, (inv.deadline ?? Number.POSITIVE_INFINITY) - Date.now()),
    onEnd: (end) => {
      if (end.cutOff) abort.abort(new StreamCutOff(`the gateway ended the stream: ${end.errorCode}`));
      inv.measure({ ok: end.ok, errorCode: end.errorCode, bytesOut: end.bytesOut });
      settle(end);
    },
  });
  const turn = inv.turn;
  const events = turn ? releaseAtTerminalEvent(relayed, () => turn.release(true)) : relayed;
  if (turn) relayEnd.then(() => turn.release(true));
  return driveRun({
    runId: run.id,
    recorder: run.recorder,
    started: run.started,
    beginRecord: run.begin,
    cancelled: run.cancelled,
    events,
    relayEnd,
    abortAgent: (reason) => abort.abort(reason === "cancelled" ? new RunCancelled() : new StreamCutOff(reason)),
    attach,
    waitUntil: deps.waitUntil,
  });
}
