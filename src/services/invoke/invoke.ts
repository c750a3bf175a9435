// POST /v1/invoke/:agentId, /stream and background runs: route to the agent's active deployment
// (or, a preview, to the deployment the caller names in x-webhost-deployment; or, for a request
// naming a session, to the session's pinned deployment: services/sessions/resolve.ts; or, while a
// canary rollout runs, to its candidate for the requests its split sends there), forward the invoke/v1 request to its invokePath, and pass the answer through. JSON answers are
// checked against invoke/v1 before they are returned (a direct call: no run, no Durable Object).
// /stream and POST /v1/agents/:agentId/runs are runs: the agent's SSE is relayed event by event (a
// JSON answer is adapted to delta + done) by the run's driver (services/runs/drive.ts), which
// numbers and records the events and outlives the client; a background run's call is made the
// same way by the run's Durable Object (services/runs/background.ts), from the spec the gateway
// hands it (CallSpec: invocationOf builds the call from it). The user's POST is never retried. The
// gateway's own measurement is recorded off the response path, once per invocation or run.
import { and, eq, isNull } from "drizzle-orm";
import { utf8 } from "../../crypto/encoding";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { agents, type DeploymentRow, deployments } from "../../db/schema";
import { ApiError, type ProblemCode } from "../../lib/errors";
import { isIdOf, newId } from "../../lib/ids";
import { describeError, logError } from "../../lib/logger";
import { readBoundedText } from "../../lib/read-bounded";
import { type InvokeTarget, RuntimeError, type RuntimeProvider, type RuntimeProviderName } from "../../runtime/types";
import { agentNotFound } from "../agents/agents";
import type { ArtifactBucket } from "../deployments/artifacts";
import { loadDeploymentBundle } from "../deployments/bundle";
import { type InvocationMeasurement, type RecordInvocationDeps, recordInvocation } from "../metering/record-invocation";
import { goesToCandidate } from "../rollouts/split";
import { driveRun } from "../runs/drive";
import { sseBlock } from "../runs/sse-blocks";
import {
  type CallSpec,
  type RunEnd,
  type RunRecorderApi,
  type RunRecorders,
  type RunStart,
  type RunView,
  runStatusFor,
} from "../runs/types";
import { releaseAtTerminalEvent, resolveSessionTurn, type SessionTurn } from "../sessions/resolve";
import type { SessionKeepers } from "../sessions/types";
import { admitInvocation, type QuotaDecision, rateLimitHeaders } from "../usage/invocation-quota";
import type { Tier, TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import { AgentResponseSchema, type InvokeRequest } from "./contract";
import { agentRoute } from "./route-cache";
import { adaptJsonToSse, type RelayEnd, relaySse } from "./sse";

export const DEPLOYMENT_ID_HEADER = "x-deployment-id";
/** Names the run a /stream answer is (GET /v1/runs/:runId/events replays it). */
export const RUN_ID_HEADER = "x-run-id";
/** The request header that names a deployment of the agent to invoke instead of the active one. */
export const PREVIEW_DEPLOYMENT_HEADER = "x-webhost-deployment";
/** The statuses a deployment can be invoked by id in (its script must still be in the runtime). */
const INVOCABLE_STATUSES: ReadonlySet<string> = new Set(["ready", "active", "inactive"]);
/** Largest JSON answer the gateway reads from an agent. */
export const MAX_AGENT_JSON_BYTES = 4 * 1024 * 1024;

const INTERNAL_ORIGIN = "https://agent.webhost.internal";

export type InvokeDeps = RecordInvocationDeps & {
  db: Db;
  userId: string;
  keyring: Keyring;
  tierLimits: TierLimitsByTier;
  runtime: RuntimeProvider;
  /** The ARTIFACTS bucket a cold start reads the bundle from. */
  artifacts?: ArtifactBucket;
  requestId: string;
  timeoutMs: number;
  waitUntil: (promise: Promise<unknown>) => void;
  /** The runs' Durable Objects (every /stream is a run). */
  runs: RunRecorders;
  /** The sessions' Durable Objects (a request with a sessionId is a turn of its session). */
  sessions: SessionKeepers;
};

class InvokeTimeout extends Error {}
class StreamCutOff extends Error {}

/** Which deployment to call: the active one, or (a preview) the one the caller names. */
export type InvokeOptions = { previewDeploymentId?: string };

/** Everything an invocation needs once the agent is routed and the call admitted. */
async function prepareInvocation(
  deps: InvokeDeps,
  agentId: string,
  body: InvokeRequest,
  stream: boolean,
  opts: InvokeOptions = {},
  /** The run this invocation is, if any: the agent's request names it (x-run-id), so its log lines can. */
  runId?: string,
) {
  const startedAt = Date.now();
  const preview = opts.previewDeploymentId !== undefined;
  // Which deployment: a preview header names one; else a session's turn goes to its pin (the turn
  // holds the session until it is released; a new session is pinned where the rollout split, if
  // any, sends it); else the rollout split by request id, or the active one.
  let turn: SessionTurn | undefined;
  let deployment: DeploymentRow;
  if (opts.previewDeploymentId !== undefined) {
    deployment = await previewDeploymentOf(deps, agentId, opts.previewDeploymentId);
  } else if (body.sessionId !== undefined) {
    turn = await resolveSessionTurn(
      { ...deps, maxTurnMs: (streamSeconds) => deps.timeoutMs * 2 + streamSeconds * 1000 },
      agentId,
      body.sessionId,
    );
    deployment = turn.deployment;
  } else {
    deployment = await servingDeploymentOf(deps, agentId, deps.requestId);
  }
  // The user's tier decides the period's invocation quota and the script's CPU and subrequest
  // limits for this invocation (its body size limit was applied before the body was read).
  const payload = JSON.stringify(body);
  const bytesIn = utf8.encode(payload).byteLength;
  let tier: Tier;
  let plan: TierLimitsByTier[Tier];
  let quota: QuotaDecision;
  try {
    ({ tier, limits: plan } = await limitsForUser(deps.db, deps.userId, deps.tierLimits, {
      waitUntil: deps.waitUntil,
    }));
    quota = await admitInvocation(deps.db, {
      userId: deps.userId,
      limit: plan.invocationsPerPeriod,
      waitUntil: deps.waitUntil,
    });
  } catch (err) {
    await turn?.release(false);
    throw err;
  }
  if (!quota.allowed) {
    await turn?.release(false);
    throw usageLimitExceeded(quota, tier);
  }
  const headers: Record<string, string> = { [DEPLOYMENT_ID_HEADER]: deployment.id, ...rateLimitHeaders(quota) };
  const spec: CallSpec = {
    requestId: deps.requestId,
    userId: deps.userId,
    agentId,
    ...(runId ? { runId } : {}),
    deployment: {
      id: deployment.id,
      userId: deployment.userId,
      agentId: deployment.agentId,
      runtimeProvider: deployment.runtimeProvider,
      scriptName: deployment.scriptName,
      invokePath: deployment.invokePath,
    },
    payload,
    bytesIn,
    stream,
    // Billed and counted like any invocation (it runs the agent's code); told apart in metrics.
    kind: preview ? "preview" : "invoke",
    startedAt,
    limits: { cpuMs: plan.cpuMs, subRequests: plan.subRequests },
    streamSeconds: plan.streamSeconds,
    timeoutMs: deps.timeoutMs,
  };
  const inv = invocationOf(deps, spec, { headers, turn, loadBundle: () => loadDeploymentBundle(deps, deployment) });
  return { ...inv, held: turn?.held };
}

/** What making an admitted call needs besides its spec: the runtime, metering, `waitUntil`. */
export type CallDeps = RecordInvocationDeps & {
  runtime: RuntimeProvider;
  timeoutMs: number;
  waitUntil: (promise: Promise<unknown>) => void;
};

/**
 * The call `spec` describes, ready to make (its request, target, measurement and abort), wherever
 * it is made: in the gateway, or in a background run's Durable Object (services/runs/background.ts).
 */
export function invocationOf(
  deps: Pick<CallDeps, "db" | "usageQueue" | "waitUntil">,
  spec: CallSpec,
  extras: {
    /** The answer's headers (x-deployment-id and the quota's). */
    headers?: Record<string, string>;
    /** The session turn the call holds. */
    turn?: Pick<SessionTurn, "release">;
    /** Reads the deployment's bundle (a cold start of its script). */
    loadBundle: InvokeTarget["loadBundle"];
    /** A run's deadline (its record's): the call and its stream end by then at the latest. */
    deadline?: number;
  },
) {
  const { deployment, startedAt } = spec;
  const headers = extras.headers ?? { [DEPLOYMENT_ID_HEADER]: deployment.id };
  const measure = (m: Pick<InvocationMeasurement, "ok" | "errorCode" | "bytesOut">) =>
    deps.waitUntil(
      recordInvocation(deps, {
        requestId: spec.requestId,
        userId: spec.userId,
        agentId: spec.agentId,
        deploymentId: deployment.id,
        runtimeProvider: deployment.runtimeProvider,
        startedAt,
        durationMs: Date.now() - startedAt,
        bytesIn: spec.bytesIn,
        streaming: spec.stream,
        kind: spec.kind,
        ...m,
      }),
    );
  const abort = new AbortController();
  const target: InvokeTarget = {
    deploymentId: deployment.id,
    runtimeProvider: deployment.runtimeProvider as RuntimeProviderName,
    userId: spec.userId,
    agentId: spec.agentId,
    scriptName: deployment.scriptName,
    loadBundle: extras.loadBundle,
  };
  const request = new Request(`${INTERNAL_ORIGIN}${deployment.invokePath}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: spec.stream ? "text/event-stream" : "application/json",
      "x-request-id": spec.requestId,
      ...(spec.runId ? { [RUN_ID_HEADER]: spec.runId } : {}),
    },
    body: spec.payload,
    signal: abort.signal,
  });
  const ref = { requestId: spec.requestId, deploymentId: deployment.id, timeoutMs: spec.timeoutMs };
  return {
    spec,
    startedAt,
    deployment,
    streamSeconds: spec.streamSeconds,
    limits: spec.limits,
    headers,
    measure,
    abort,
    target,
    request,
    ref,
    turn: extras.turn,
    deadline: extras.deadline,
  };
}

export type Invocation = ReturnType<typeof invocationOf>;

/** POST /v1/invoke/:agentId: a direct call to the agent (no run, no Durable Object). */
export async function invokeAgent(
  deps: InvokeDeps,
  agentId: string,
  body: InvokeRequest,
  opts: InvokeOptions = {},
): Promise<Response> {
  const inv = await prepareInvocation(deps, agentId, body, false, opts);
  if (!inv.turn) return callDirect(deps, inv);
  // A session's turn ends before the answer is returned, so the client's next turn finds it free.
  try {
    return await callDirect(deps, inv);
  } finally {
    await inv.turn.release(true);
  }
}

async function callDirect(deps: InvokeDeps, inv: Invocation): Promise<Response> {
  const { headers, abort } = inv;
  const failWith = (err: ApiError): never => {
    inv.measure({ ok: false, errorCode: err.code, bytesOut: 0 });
    throw err;
  };

  const called = await callAgent(deps, inv);
  if ("problem" in called) return failWith(called.problem);
  const { upstream, deadline } = called;

  let text: string;
  try {
    text = await beforeDeadline(readBounded(upstream, MAX_AGENT_JSON_BYTES), deadline, abort);
  } catch (err) {
    return failWith(upstreamProblem(err, inv.ref, headers));
  }
  try {
    AgentResponseSchema.parse(JSON.parse(text));
  } catch {
    return failWith(invalidAnswer(upstream, text, headers));
  }
  inv.measure({ ok: true, bytesOut: utf8.encode(text).byteLength });
  return new Response(text, { status: 200, headers: { ...headers, "content-type": "application/json" } });
}

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
  const inv = await prepareInvocation(deps, agentId, body, true, opts, runId);
  const run = beginRun(deps, inv, runId);
  const headers = { ...inv.headers, [RUN_ID_HEADER]: run.id };
  // The run's record is made once its first event has been relayed (or the call failed), so the
  // first event never waits for the Durable Object; appends wait for it, behind the relay. A read
  // of the run that arrives before the record exists waits for it briefly (services/runs/runs.ts).
  run.started.catch((err) => logError("run_start_failed", { runId: run.id, error: describeError(err) }));
  const answer = callForRun(deps, inv, run, true);
  let stream: ReadableStream<Uint8Array> | null;
  try {
    stream = await answer;
  } catch (err) {
    if (err instanceof ApiError) throw new ApiError(err.code, err.detail, { headers, extra: err.extra });
    throw err;
  }
  return new Response(stream, {
    status: 200,
    headers: { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
  });
}

/**
 * POST /v1/agents/:agentId/runs: a background run. Routing, the quota, the session's turn and the
 * run's id are settled here, before answering; then the run is handed to its Durable Object, which
 * records it and calls the agent from its alarm (services/runs/background.ts): a run of minutes
 * does not depend on this request's `waitUntil`, which Cloudflare cuts short after the answer.
 */
export async function startBackgroundRun(deps: InvokeDeps, agentId: string, body: InvokeRequest): Promise<RunView> {
  const runId = newId("run");
  const inv = await prepareInvocation(deps, agentId, body, true, {}, runId);
  const start = runStartOf(inv, runId);
  try {
    await deps.runs(runId).startBackground(start, {
      call: inv.spec,
      ...(inv.held ? { sessionTurn: inv.held } : {}),
    });
  } catch (err) {
    // The answer may have been lost after the object took the run (a dropped connection): then the
    // run is on its way and this is its 202 (the turn stays held by it). A retry must not start it
    // twice.
    if (await runTaken(deps, runId)) return runViewOf(start);
    // Nothing was called: the turn is free again (not counted); the quota was admitted once, as for
    // any invocation the gateway refused after admitting it.
    await inv.turn?.release(false);
    logError("run_start_failed", { runId, error: describeError(err) });
    throw new ApiError("service_unavailable", "the run could not be recorded; try again", {
      headers: { "retry-after": "1" },
    });
  }
  return runViewOf(start);
}

/** Whether the run's object holds the run (false also when it cannot be asked). */
async function runTaken(deps: InvokeDeps, runId: string): Promise<boolean> {
  try {
    return (await deps.runs(runId).get(deps.userId)) !== null;
  } catch {
    return false;
  }
}

/** A run as its driver sees it. */
export type RunHandle = {
  id: string;
  recorder: RunRecorderApi;
  /** Sends the run's `start` to its Durable Object (once; later calls do nothing). */
  begin: () => void;
  started: Promise<void>;
  cancelled: Promise<boolean>;
};

/** The run's record: its deadline is the invoke timeout plus the stream's time limit from now. */
export function runStartOf(inv: Invocation, id: string): RunStart {
  const now = Date.now();
  return {
    id,
    userId: inv.spec.userId,
    agentId: inv.spec.agentId,
    deploymentId: inv.deployment.id,
    createdAt: inv.startedAt,
    startedAt: now,
    deadline: now + inv.spec.timeoutMs + inv.streamSeconds * 1000,
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

/** A new run: its record in the Durable Object is made when `begin` is called. */
function beginRun(deps: InvokeDeps, inv: Invocation, id: string): RunHandle {
  const recorder = deps.runs(id);
  const start = runStartOf(inv, id);
  let begin: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    begin = resolve;
  });
  return runHandle(
    inv,
    recorder,
    id,
    begin,
    gate.then(() => recorder.start(start)),
  );
}

/**
 * The handle a run's driver uses: `started` settles once the run's record exists (appends wait
 * for it); a cancel while the agent has not answered yet aborts the call itself.
 */
export function runHandle(
  inv: Invocation,
  recorder: RunRecorderApi,
  id: string,
  begin: () => void,
  started: Promise<void>,
): RunHandle {
  const cancelled = started.then(() => recorder.untilCancelled());
  cancelled.catch(() => {});
  cancelled.then((yes) => yes && inv.abort.abort(new RunCancelled())).catch(() => {});
  return { id, recorder, begin, started, cancelled };
}

class RunCancelled extends Error {}

/**
 * Calls the agent for a run and hands its stream to the run's driver: the client's event stream
 * when `attach`, else null. A failure before the agent's stream starts ends the run (recorded as
 * one `error` event) and rejects with the problem. A session's turn ends with the run: before its
 * terminal event, or at once when the call fails.
 */
export async function callForRun(deps: CallDeps, inv: Invocation, run: RunHandle, attach: boolean) {
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

async function upstreamStatusProblem(
  upstream: Response,
  deadline: number,
  abort: AbortController,
  headers: Record<string, string>,
): Promise<ApiError> {
  // Only the start of an error body is shown to the caller, so only that much is read.
  const text = await beforeDeadline(readBounded(upstream, 2048, { truncate: true }), deadline, abort).catch(() => "");
  return new ApiError("upstream_error", `the agent answered with HTTP ${upstream.status}`, {
    headers,
    extra: { agentStatus: upstream.status, agentBody: text.slice(0, 2048) },
  });
}

function invalidAnswer(upstream: Response, text: string, headers: Record<string, string>): ApiError {
  const contentType = upstream.headers.get("content-type") ?? "";
  return new ApiError(
    "upstream_invalid_response",
    `the agent's answer is not an invoke/v1 response (expected JSON with output.text; got ${describeBody(contentType, text)})`,
    { headers },
  );
}

/** 429 once the period's invocations are used up: Retry-After is the time until the period resets. */
function usageLimitExceeded(quota: QuotaDecision, tier: Tier): ApiError {
  return new ApiError(
    "usage_limit_exceeded",
    `the ${tier} plan allows ${quota.limit} invocations per month; ${quota.periodKey} is used up`,
    {
      headers: { "retry-after": String(quota.resetSeconds), ...rateLimitHeaders(quota) },
      extra: { limit: "invocationsPerPeriod", tier, max: quota.limit, periodKey: quota.periodKey },
    },
  );
}

/**
 * The deployment that serves this invocation, routed through the isolate's route cache
 * (route-cache.ts holds the staleness rules): while a canary rollout runs, its candidate or the
 * active deployment by the stable hash of `splitKey` (services/rollouts/split.ts), else the active
 * one. 404 for an unknown, deleted or foreign agent, 409 when it is disabled or has no active
 * deployment. (A preview, handled by the caller, comes before all of this.)
 */
async function servingDeploymentOf(
  deps: { db: Db; userId: string; waitUntil: (promise: Promise<unknown>) => void },
  agentId: string,
  splitKey: string,
) {
  if (!isIdOf("agent", agentId)) throw agentNotFound(agentId);
  const route = await agentRoute(deps.db, { userId: deps.userId, agentId }, { waitUntil: deps.waitUntil });
  switch (route.kind) {
    case "deployment":
      if (route.rollout && goesToCandidate(route.rollout.id, splitKey, route.rollout.percent)) {
        return route.rollout.candidate;
      }
      return route.deployment;
    case "not_found":
      throw agentNotFound(agentId);
    case "disabled":
      throw new ApiError("agent_disabled", `agent ${agentId} is disabled`);
    case "no_active_deployment":
      throw new ApiError("no_active_deployment", `agent ${agentId} has no active deployment; deploy it first`);
  }
}

/**
 * A preview's deployment: the named deployment of this user's agent, read from D1 (tenant-scoped,
 * not through the route cache, which holds only the active route). 404 for an unknown, deleted or
 * foreign agent and for a deployment id that is not one of this agent's (another tenant's or
 * agent's, or not an id at all); 409 when the agent is disabled, and when the deployment cannot
 * run (deploying, failed, or its script removed by retention): deployment_not_invocable.
 */
async function previewDeploymentOf(
  deps: { db: Db; userId: string },
  agentId: string,
  deploymentId: string,
): Promise<DeploymentRow> {
  if (!isIdOf("agent", agentId)) throw agentNotFound(agentId);
  const named = isIdOf("deployment", deploymentId) ? deploymentId : "";
  const [found] = await deps.db
    .select({ agentStatus: agents.status, deployment: deployments })
    .from(agents)
    .leftJoin(
      deployments,
      and(eq(deployments.id, named), eq(deployments.agentId, agents.id), eq(deployments.userId, agents.userId)),
    )
    .where(and(eq(agents.id, agentId), eq(agents.userId, deps.userId), isNull(agents.deletedAt)))
    .limit(1);
  if (!found) throw agentNotFound(agentId);
  const shown = deploymentId.slice(0, 64);
  if (!found.deployment) {
    throw new ApiError(
      "not_found",
      `deployment ${shown} of agent ${agentId} not found (header ${PREVIEW_DEPLOYMENT_HEADER})`,
    );
  }
  if (found.agentStatus === "disabled") throw new ApiError("agent_disabled", `agent ${agentId} is disabled`);
  const row = found.deployment;
  if (!INVOCABLE_STATUSES.has(row.status) || row.scriptRemovedAt !== null) {
    const why =
      row.scriptRemovedAt !== null
        ? "its code was removed from the runtime (retention keeps only the newest inactive and ready deployments)"
        : row.status === "deploying"
          ? "it is still deploying"
          : "it failed to deploy";
    throw new ApiError("deployment_not_invocable", `deployment ${row.id} cannot be invoked: ${why}`, {
      extra: { deploymentStatus: row.status },
    });
  }
  return row;
}

/**
 * Calls the agent with its deadline, which starts now (not while the gateway was routing and
 * checking quota): the answer when it is a success, else the problem to answer with.
 */
async function callAgent(
  deps: CallDeps,
  inv: Invocation,
): Promise<{ upstream: Response; deadline: number } | { problem: ApiError }> {
  const deadline = Math.min(Date.now() + deps.timeoutMs, inv.deadline ?? Number.POSITIVE_INFINITY);
  let upstream: Response;
  try {
    upstream = await beforeDeadline(
      deps.runtime.invoke(inv.target, inv.request, { limits: inv.limits }),
      deadline,
      inv.abort,
    );
  } catch (err) {
    return { problem: upstreamProblem(err, inv.ref, inv.headers) };
  }
  if (!upstream.ok) return { problem: await upstreamStatusProblem(upstream, deadline, inv.abort, inv.headers) };
  return { upstream, deadline };
}

/** Rejects with InvokeTimeout (and aborts the agent's request) if `work` is not done by `deadline`. */
async function beforeDeadline<T>(work: Promise<T>, deadline: number, abort: AbortController): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => {
        reject(new InvokeTimeout());
        abort.abort(new InvokeTimeout());
      },
      Math.max(0, deadline - Date.now()),
    );
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

/** The agent's answer as text, at most `maxBytes` (beyond it: invalid_response, or cut with `truncate`). */
async function readBounded(res: Response, maxBytes: number, opts: { truncate?: boolean } = {}): Promise<string> {
  const text = await readBoundedText(res.body, maxBytes, { overflow: opts.truncate ? "truncate" : "null" });
  if (text === null) throw new RuntimeError("invalid_response", `the agent's answer exceeds ${maxBytes} bytes`, false);
  return text;
}

function describeBody(contentType: string, text: string): string {
  const kind = contentType ? `${contentType.split(";")[0]}` : "no content type";
  return text.length === 0 ? `an empty body (${kind})` : `${kind}: ${JSON.stringify(text.slice(0, 80))}`;
}

const RUNTIME_PROBLEMS: Record<RuntimeError["code"], ProblemCode> = {
  script_not_found: "upstream_not_found",
  limit_exceeded: "upstream_limit_exceeded",
  exception: "upstream_exception",
  load_failed: "upstream_exception",
  timeout: "upstream_timeout",
  invalid_response: "upstream_invalid_response",
  unavailable: "upstream_error",
  throttled: "upstream_unavailable",
};

/** Seconds a caller waits after the runtime throttled an invocation (AgentCore sends no hint). */
export const THROTTLED_RETRY_AFTER_SECONDS = 2;

/**
 * The problem for a failed call to the agent. The agent's own failures say what went wrong; the
 * platform's (runtime, D1, decryption, configuration) say only that the platform failed, with the
 * request id to quote, and their detail goes to an operator log line.
 */
function upstreamProblem(
  err: unknown,
  ctx: { requestId: string; deploymentId: string; timeoutMs: number },
  headers: Record<string, string>,
): ApiError {
  if (err instanceof InvokeTimeout || (err instanceof Error && err.name === "AbortError")) {
    return new ApiError("upstream_timeout", `the agent did not answer within ${ctx.timeoutMs} ms`, { headers });
  }
  if (err instanceof RuntimeError && err.fault === "agent") {
    const detail =
      err.code === "timeout"
        ? `the agent did not answer: ${err.message}`
        : err.code === "load_failed"
          ? `the agent's module failed to start: ${err.message}`
          : `the agent failed: ${err.message}`;
    return new ApiError(RUNTIME_PROBLEMS[err.code], detail.slice(0, 600), { headers, cause: err });
  }
  const fault = err instanceof RuntimeError ? err.fault : "platform";
  if (err instanceof RuntimeError && err.code === "throttled") {
    logError("invoke_runtime_throttled", {
      requestId: ctx.requestId,
      deploymentId: ctx.deploymentId,
      error: err.message,
    });
    return new ApiError("upstream_unavailable", "the agent's runtime is busy; retry shortly", {
      headers: { ...headers, "retry-after": String(THROTTLED_RETRY_AFTER_SECONDS) },
    });
  }
  logError("invoke_platform_failure", {
    requestId: ctx.requestId,
    deploymentId: ctx.deploymentId,
    fault,
    error: describeError(err),
  });
  // Not "the agent threw": a platform failure is upstream_error (upstream_not_found for a missing script).
  const code = err instanceof RuntimeError && err.code === "script_not_found" ? "upstream_not_found" : "upstream_error";
  const what =
    fault === "configuration" ? "the platform is misconfigured and could not run" : "the platform failed to run";
  return new ApiError(code, `${what} this agent; quote ref ${ctx.requestId} when reporting it`, { headers });
}
