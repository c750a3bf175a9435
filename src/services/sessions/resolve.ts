// The routing decision for an invocation that names a session (invoke/v1 `sessionId`): which
// deployment its turn goes to, and the turn itself (one at a time per session). Called from one
// place, services/invoke/prepare.ts, where the deployment to call is chosen.
//
// A session's first turn pins it to the agent's active deployment (or, while a canary rollout
// runs, to the version its split gives the session id); every later turn goes to that
// deployment, whatever is active now (a new deploy or a rollback does not move a session), until
// the session is ended or expires. A pinned deployment that can no longer run (its script removed
// by retention, the agent disabled) is 409 session_deployment_gone; a second turn while one is
// running is 409 session_busy.
import { and, eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { type DeploymentRow, deployments, rollouts } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { isIdOf } from "../../lib/ids";
import { describeError, logError } from "../../lib/logger";
import { agentNotFound } from "../agents/agents";
import { agentRoute } from "../invoke/route-cache";
import { goesToCandidate } from "../rollouts/split";
import type { TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import type { SessionKeepers, SessionKey, SessionTimes } from "./types";

export type SessionRoutingDeps = {
  db: Db;
  userId: string;
  sessions: SessionKeepers;
  tierLimits: TierLimitsByTier;
  waitUntil: (promise: Promise<unknown>) => void;
  /** The longest one turn can run (invoke timeout plus the tier's stream time). */
  maxTurnMs: (streamSeconds: number) => number;
};

/** A turn that holds its session until `release` (idempotent; the first call wins). */
export type SessionTurn = {
  sessionId: string;
  deployment: DeploymentRow;
  /** Ends the turn; `reachedAgent` counts it in the session's turns. */
  release: (reachedAgent: boolean) => Promise<void>;
  /** Names the turn, so another place (a background run's Durable Object) can end it: turnReleaser. */
  held: { key: SessionKey; turnId: string };
};

/** The statuses a pinned deployment can still run in. */
const RUNNABLE_STATUSES: ReadonlySet<string> = new Set(["active", "inactive", "ready"]);
/** Slack on a turn's lease beyond its own deadlines, so the lease never ends a turn still running. */
const LEASE_SLACK_MS = 60_000;

export function sessionBusy(sessionId: string): ApiError {
  return new ApiError(
    "session_busy",
    `session ${sessionId.slice(0, 200)} is running a turn; send the next turn when it has ended`,
    { headers: { "retry-after": "1" } },
  );
}

function deploymentGone(sessionId: string, deploymentId: string, why: string): ApiError {
  return new ApiError(
    "session_deployment_gone",
    `session ${sessionId.slice(0, 200)} is pinned to deployment ${deploymentId}, which can no longer run (${why}); end the session (DELETE) or use a new sessionId`,
    { extra: { deploymentId } },
  );
}

/** Chooses the deployment for this session's turn and starts the turn. */
export async function resolveSessionTurn(
  deps: SessionRoutingDeps,
  agentId: string,
  sessionId: string,
): Promise<SessionTurn> {
  if (!isIdOf("agent", agentId)) throw agentNotFound(agentId);
  const key: SessionKey = { userId: deps.userId, agentId, sessionId };
  const keeper = deps.sessions(key);
  const route = await agentRoute(deps.db, { userId: deps.userId, agentId }, { waitUntil: deps.waitUntil });
  if (route.kind === "not_found") throw agentNotFound(agentId);
  if (route.kind === "disabled") {
    const session = await keeper.get(key);
    if (session) throw deploymentGone(sessionId, session.deploymentId, "the agent is disabled");
    throw new ApiError("agent_disabled", `agent ${agentId} is disabled`);
  }
  const active = route.kind === "deployment" ? route.deployment : null;
  // A new session is pinned where the canary rollout's split sends its id (if one runs), so the
  // whole conversation stays on one version; a pinned session keeps its pin whatever the split says.
  // A pin on the candidate remembers its rollout: if the rollout is aborted, the session goes back
  // with everyone else (below); if it completes, the pin becomes an ordinary one.
  const rollout = route.kind === "deployment" ? (route.rollout ?? undefined) : undefined;
  const toCandidate = rollout !== undefined && goesToCandidate(rollout.id, sessionId, rollout.percent);
  const firstTurn = toCandidate ? rollout.candidate : active;

  const { limits } = await limitsForUser(deps.db, deps.userId, deps.tierLimits, { waitUntil: deps.waitUntil });
  const times: SessionTimes = {
    idleMs: limits.sessionIdleSeconds * 1000,
    leaseMs: deps.maxTurnMs(limits.streamSeconds) + LEASE_SLACK_MS,
  };
  const grant = await keeper.beginTurn(key, firstTurn?.id ?? null, times, toCandidate ? rollout.id : null);
  if (grant.kind === "busy") throw sessionBusy(sessionId);
  if (grant.kind === "unpinned") {
    throw new ApiError("no_active_deployment", `agent ${agentId} has no active deployment; deploy it first`);
  }

  const held = { key, turnId: grant.turnId };
  const release = turnReleaser(deps.sessions, held);

  if (grant.pinRolloutId !== null && grant.pinRolloutId !== rollout?.id) {
    // The rollout that chose this pin has ended (the only D1 read here, once per such session).
    const ended = await rolloutStatus(deps.db, deps.userId, grant.pinRolloutId).catch(async (err) => {
      await release(false);
      throw err;
    });
    // Still running (the route cache is a second behind, or the baseline moved and the evaluator
    // has not aborted it yet): the pin keeps its link, so a later abort still brings it back.
    if (ended !== "running") {
      const repinTo = ended === "aborted" && firstTurn ? firstTurn : null;
      await keeper.repin(key, grant.turnId, repinTo?.id ?? grant.deploymentId, null).catch(async (err) => {
        await release(false);
        throw err;
      });
      if (repinTo) return { sessionId, deployment: repinTo, release, held };
    }
  }
  for (const known of [active, firstTurn]) {
    if (known && grant.deploymentId === known.id) return { sessionId, deployment: known, release, held };
  }
  let pinned: DeploymentRow | undefined;
  try {
    pinned = await pinnedDeployment(deps.db, key, grant.deploymentId);
  } catch (err) {
    await release(false);
    throw err;
  }
  const why = !pinned
    ? "it no longer exists"
    : pinned.scriptRemovedAt !== null
      ? "its code was removed from the runtime by retention"
      : !RUNNABLE_STATUSES.has(pinned.status)
        ? `it is ${pinned.status}`
        : null;
  if (!pinned || why !== null) {
    await release(false);
    throw deploymentGone(sessionId, grant.deploymentId, why ?? "unknown");
  }
  return { sessionId, deployment: pinned, release, held };
}

/**
 * Ends the turn `held` once (later calls return the first call's promise); a failure is logged,
 * never thrown. Also how a turn started elsewhere is ended: the gateway hands a background run's
 * turn to the run's Durable Object, which releases it when the run ends.
 */
export function turnReleaser(
  sessions: SessionKeepers,
  held: { key: SessionKey; turnId: string },
): (reachedAgent: boolean) => Promise<void> {
  let released: Promise<void> | null = null;
  return (reachedAgent) => {
    released ??= sessions(held.key)
      .endTurn(held.key, held.turnId, reachedAgent)
      .catch((err) => {
        // The turn's lease frees the session later; the next turn may see session_busy until then.
        logError("session_release_failed", { agentId: held.key.agentId, error: describeError(err) });
      });
    return released;
  };
}

/** A rollout's status (tenant-scoped); undefined if there is none. */
async function rolloutStatus(db: Db, userId: string, rolloutId: string): Promise<string | undefined> {
  const row = await db
    .select({ status: rollouts.status })
    .from(rollouts)
    .where(and(eq(rollouts.id, rolloutId), eq(rollouts.userId, userId)))
    .limit(1)
    .get();
  return row?.status;
}

/** The pinned deployment, tenant- and agent-scoped. */
async function pinnedDeployment(db: Db, key: SessionKey, deploymentId: string): Promise<DeploymentRow | undefined> {
  return db
    .select()
    .from(deployments)
    .where(
      and(eq(deployments.id, deploymentId), eq(deployments.agentId, key.agentId), eq(deployments.userId, key.userId)),
    )
    .limit(1)
    .get();
}

/**
 * The run's relayed events, with the session's turn released before the terminal event (`done`
 * or `error`) is passed on, so a client that sends its next turn on reading it is not told
 * session_busy; also released when the relay ends any other way (cancel, the run's limits).
 */
export function releaseAtTerminalEvent(
  events: ReadableStream<Uint8Array>,
  release: () => Promise<void>,
): ReadableStream<Uint8Array> {
  const reader = events.getReader();
  const decoder = new TextDecoder();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const chunk = await reader.read().catch(async (err) => {
          await release();
          throw err;
        });
        if (chunk.done) {
          await release();
          controller.close();
          return;
        }
        // The relay hands over one whole event per chunk (invoke/sse.ts relaySse).
        if (/^event: *(done|error) *$/m.test(decoder.decode(chunk.value))) await release();
        controller.enqueue(chunk.value);
      },
      async cancel(reason) {
        await reader.cancel(reason);
        await release();
      },
    },
    { highWaterMark: 0 },
  );
}
