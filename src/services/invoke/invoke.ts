// POST /v1/invoke/:agentId and /stream: route to the agent's active deployment (or, a preview, to
// the deployment the caller names in x-webhost-deployment), forward the
// invoke/v1 request to its invokePath, and pass the answer through. JSON answers are checked
// against invoke/v1 before they are returned; /stream relays the agent's SSE event by event (a
// JSON answer is adapted to delta + done). The user's POST is never retried. The gateway's own
// measurement is recorded off the response path.
import { and, eq, isNull } from "drizzle-orm";
import { utf8 } from "../../crypto/encoding";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { agents, type DeploymentRow, deployments } from "../../db/schema";
import { ApiError, type ProblemCode } from "../../lib/errors";
import { isIdOf } from "../../lib/ids";
import { describeError, logError } from "../../lib/logger";
import { type InvokeTarget, RuntimeError, type RuntimeProvider } from "../../runtime/types";
import { agentNotFound } from "../agents/agents";
import type { ArtifactBucket } from "../deployments/artifacts";
import { loadDeploymentBundle } from "../deployments/bundle";
import { type InvocationMeasurement, type RecordInvocationDeps, recordInvocation } from "../metering/record-invocation";
import { admitInvocation, type QuotaDecision, rateLimitHeaders } from "../usage/invocation-quota";
import type { Tier, TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import { AgentResponseSchema, type InvokeRequest } from "./contract";
import { agentRoute } from "./route-cache";
import { adaptJsonToSse, relaySse } from "./sse";

export const DEPLOYMENT_ID_HEADER = "x-deployment-id";
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
};

class InvokeTimeout extends Error {}
class StreamCutOff extends Error {}

export async function invokeAgent(
  deps: InvokeDeps,
  agentId: string,
  body: InvokeRequest,
  opts: { stream: boolean /** A preview: this deployment of the agent, not the active one. */; deploymentId?: string },
): Promise<Response> {
  const startedAt = Date.now();
  const preview = opts.deploymentId !== undefined;
  const deployment =
    opts.deploymentId === undefined
      ? await activeDeploymentOf(deps, agentId)
      : await previewDeploymentOf(deps, agentId, opts.deploymentId);
  // The user's tier decides the period's invocation quota and the script's CPU and subrequest
  // limits for this invocation (its body size limit was applied before the body was read).
  const { tier, limits: plan } = await limitsForUser(deps.db, deps.userId, deps.tierLimits, {
    waitUntil: deps.waitUntil,
  });
  const payload = JSON.stringify(body);
  const bytesIn = utf8.encode(payload).byteLength;
  const quota = await admitInvocation(deps.db, {
    userId: deps.userId,
    limit: plan.invocationsPerPeriod,
    waitUntil: deps.waitUntil,
  });
  if (!quota.allowed) throw usageLimitExceeded(quota, tier);
  const limits = { cpuMs: plan.cpuMs, subRequests: plan.subRequests };
  const headers = { [DEPLOYMENT_ID_HEADER]: deployment.id, ...rateLimitHeaders(quota) };
  const measure = (m: Pick<InvocationMeasurement, "ok" | "errorCode" | "bytesOut">) =>
    deps.waitUntil(
      recordInvocation(deps, {
        requestId: deps.requestId,
        userId: deps.userId,
        agentId,
        deploymentId: deployment.id,
        runtimeProvider: deployment.runtimeProvider,
        startedAt,
        durationMs: Date.now() - startedAt,
        bytesIn,
        streaming: opts.stream,
        // Billed and counted like any invocation (it runs the agent's code); told apart in metrics.
        kind: preview ? "preview" : "invoke",
        ...m,
      }),
    );
  const ref = { requestId: deps.requestId, deploymentId: deployment.id };
  const failWith = (err: ApiError): never => {
    measure({ ok: false, errorCode: err.code, bytesOut: 0 });
    throw err;
  };

  const abort = new AbortController();
  const target: InvokeTarget = {
    deploymentId: deployment.id,
    userId: deps.userId,
    agentId,
    scriptName: deployment.scriptName,
    loadBundle: () => loadDeploymentBundle(deps, deployment),
  };
  const request = new Request(`${INTERNAL_ORIGIN}${deployment.invokePath}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: opts.stream ? "text/event-stream" : "application/json",
      "x-request-id": deps.requestId,
    },
    body: payload,
    signal: abort.signal,
  });

  // The agent's time starts when it is called, not while the gateway was routing and checking quota.
  const deadline = Date.now() + deps.timeoutMs;
  let upstream: Response;
  try {
    upstream = await beforeDeadline(deps.runtime.invoke(target, request, { limits }), deadline, abort);
  } catch (err) {
    return failWith(upstreamProblem(err, { ...ref, timeoutMs: deps.timeoutMs }, headers));
  }

  if (!upstream.ok) {
    // Only the start of an error body is shown to the caller, so only that much is read.
    const text = await beforeDeadline(readBounded(upstream, 2048, { truncate: true }), deadline, abort).catch(() => "");
    return failWith(
      new ApiError("upstream_error", `the agent answered with HTTP ${upstream.status}`, {
        headers,
        extra: { agentStatus: upstream.status, agentBody: text.slice(0, 2048) },
      }),
    );
  }

  const contentType = upstream.headers.get("content-type") ?? "";
  if (opts.stream && /^text\/event-stream/i.test(contentType) && upstream.body) {
    // Each event must complete within the invoke timeout, and the whole stream within the tier's
    // streamSeconds; the relay cancels the agent's body when it ends, and a stream the gateway
    // cut off also aborts the call itself.
    const relayed = relaySse(upstream.body, {
      idleTimeoutMs: deps.timeoutMs,
      maxDurationMs: plan.streamSeconds * 1000,
      onEnd: ({ ok, errorCode, bytesOut, cutOff }) => {
        if (cutOff) abort.abort(new StreamCutOff(`the gateway ended the stream: ${errorCode}`));
        measure({ ok, errorCode, bytesOut });
      },
    });
    return new Response(relayed, {
      status: 200,
      headers: { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
    });
  }

  // A JSON answer (for /stream too, where it is adapted): read it whole, within the deadline.
  let answer: ReturnType<typeof AgentResponseSchema.parse>;
  let text: string;
  try {
    text = await beforeDeadline(readBounded(upstream, MAX_AGENT_JSON_BYTES), deadline, abort);
  } catch (err) {
    return failWith(upstreamProblem(err, { ...ref, timeoutMs: deps.timeoutMs }, headers));
  }
  try {
    answer = AgentResponseSchema.parse(JSON.parse(text));
  } catch {
    return failWith(
      new ApiError(
        "upstream_invalid_response",
        `the agent's answer is not an invoke/v1 response (expected JSON with output.text; got ${describeBody(contentType, text)})`,
        { headers },
      ),
    );
  }
  if (opts.stream) {
    const bytes = adaptJsonToSse(answer);
    measure({ ok: true, bytesOut: bytes.byteLength });
    return new Response(bytes, {
      status: 200,
      headers: { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
    });
  }
  measure({ ok: true, bytesOut: utf8.encode(text).byteLength });
  return new Response(text, { status: 200, headers: { ...headers, "content-type": "application/json" } });
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
 * The agent's active deployment, routed through the isolate's route cache (route-cache.ts holds
 * the staleness rules): 404 for an unknown, deleted or foreign agent, 409 when it is disabled or
 * has no active deployment.
 */
async function activeDeploymentOf(
  deps: { db: Db; userId: string; waitUntil: (promise: Promise<unknown>) => void },
  agentId: string,
) {
  if (!isIdOf("agent", agentId)) throw agentNotFound(agentId);
  const route = await agentRoute(deps.db, { userId: deps.userId, agentId }, { waitUntil: deps.waitUntil });
  switch (route.kind) {
    case "deployment":
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

/** Reads at most `maxBytes` of a body: beyond that it fails, or with `truncate` stops reading. */
async function readBounded(res: Response, maxBytes: number, opts: { truncate?: boolean } = {}): Promise<string> {
  if (!res.body) return "";
  // Counted chunk by chunk, whatever Content-Length says: the runtime does not hold a user
  // script's response to its declared length.
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      if (opts.truncate) {
        chunks.push(value.subarray(0, value.byteLength - (size - maxBytes)));
        size = maxBytes;
        break;
      }
      throw new RuntimeError("invalid_response", `the agent's answer exceeds ${maxBytes} bytes`, false);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
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
};

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
