// Calling an agent once its call is admitted: the request the agent gets (from a CallSpec, plain
// data, so the call can be made in the gateway or handed to a run's Durable Object), its deadline,
// reading a bounded answer, and the problem a failed call answers with. The agent's own failures
// say what went wrong; the platform's say only that the platform failed, with a ref to quote.

import { ApiError, type ProblemCode } from "../../lib/errors";
import { describeError, logError } from "../../lib/logger";
import { readBoundedText } from "../../lib/read-bounded";
import { type InvokeTarget, RuntimeError, type RuntimeProvider, type RuntimeProviderName } from "../../runtime/types";
import { type InvocationMeasurement, type RecordInvocationDeps, recordInvocation } from "../metering/record-invocation";
import type { CallSpec } from "../runs/types";
import type { SessionTurn } from "../sessions/resolve";

export const DEPLOYMENT_ID_HEADER = "x-deployment-id";
/** Names the run a /stream answer is (GET /v1/runs/:runId/events replays it). */
export const RUN_ID_HEADER = "x-run-id";
/** Largest JSON answer the gateway reads from an agent. */
export const MAX_AGENT_JSON_BYTES = 4 * 1024 * 1024;

const INTERNAL_ORIGIN = "https://agent.webhost.internal";

class InvokeTimeout extends Error {}

/** What making an admitted call needs besides its spec: the runtime, metering, `waitUntil`. */
export type CallDeps = RecordInvocationDeps & {
  runtime: RuntimeProvider;
  timeoutMs: number;
  waitUntil: (promise: Promise<unknown>) => void;
};

/**
 * The call `spec` describes, ready to make (its request, target, measurement and abort), wherever
 * it is made: in the gateway (a direct call), or in a run's Durable Object (services/runs/call.ts).
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

/**
 * Calls the agent with its deadline, which starts now (not while the gateway was routing and
 * checking quota): the answer when it is a success, else the problem to answer with.
 */
export async function callAgent(
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
export async function beforeDeadline<T>(work: Promise<T>, deadline: number, abort: AbortController): Promise<T> {
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
export async function readBounded(res: Response, maxBytes: number, opts: { truncate?: boolean } = {}): Promise<string> {
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
export function upstreamProblem(
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

export function invalidAnswer(upstream: Response, text: string, headers: Record<string, string>): ApiError {
  const contentType = upstream.headers.get("content-type") ?? "";
  return new ApiError(
    "upstream_invalid_response",
    `the agent's answer is not an invoke/v1 response (expected JSON with output.text; got ${describeBody(contentType, text)})`,
    { headers },
  );
}
