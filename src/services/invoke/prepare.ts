// Routing and admitting an invocation, before anything calls the agent: which deployment serves it
// (a preview names one in x-webhost-deployment; a session's turn goes to the session's pinned
// deployment, services/sessions/resolve.ts; while a canary rollout runs, its split sends some
// requests to the candidate; else the active one), the user's tier limits, and the period's quota.
// The outcome is a CallSpec: plain data that the direct call (invoke.ts) or a run's Durable Object
// (services/runs/) makes the call from.
import { and, eq, isNull } from "drizzle-orm";
import { utf8 } from "../../crypto/encoding";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { agents, type DeploymentRow, deployments } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { isIdOf } from "../../lib/ids";
import type { RuntimeProvider } from "../../runtime/types";
import { agentNotFound } from "../agents/agents";
import type { ArtifactBucket } from "../deployments/artifacts";
import type { RecordInvocationDeps } from "../metering/record-invocation";
import { goesToCandidate } from "../rollouts/split";
import type { CallSpec, RunRecorders } from "../runs/types";
import { resolveSessionTurn, type SessionTurn } from "../sessions/resolve";
import type { SessionKeepers } from "../sessions/types";
import { admitInvocation, type QuotaDecision, rateLimitHeaders } from "../usage/invocation-quota";
import type { Tier, TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import { DEPLOYMENT_ID_HEADER } from "./call";
import type { InvokeRequest } from "./contract";
import { agentRoute } from "./route-cache";

/** The request header that names a deployment of the agent to invoke instead of the active one. */
export const PREVIEW_DEPLOYMENT_HEADER = "x-webhost-deployment";
/** The statuses a deployment can be invoked by id in (its script must still be in the runtime). */
const INVOCABLE_STATUSES: ReadonlySet<string> = new Set(["ready", "active", "inactive"]);

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

/** Which deployment to call: the active one, or (a preview) the one the caller names. */
export type InvokeOptions = { previewDeploymentId?: string };

/**
 * Routes and admits a call: which deployment serves it, the user's tier limits, the period's quota
 * and (for a session's turn) the turn it holds. Answers the call as plain data (CallSpec), the
 * headers its answer carries, and the turn.
 */
export async function prepareInvocation(
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
  return { spec, headers, turn, deployment };
}

export type PreparedCall = Awaited<ReturnType<typeof prepareInvocation>>;

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
