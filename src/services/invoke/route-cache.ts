// Invocation routing: (user, agent) -> the agent's active deployment, or why there is none. Read
// from D1 on a miss and cached per isolate, so a busy agent's invocations cost no D1 read each.
//
// Staleness rules (what a cached route may get wrong, and for how long):
//  1. An entry is trusted for ROUTE_CACHE_TTL_MS = 1 s counted from when its D1 read *started*.
//     So every invocation that starts more than 1 s after a routing change was committed to D1 —
//     an activate (rollback), a deployment becoming active, a disable, a delete — sees the change,
//     in every isolate. (The API promises 2 s; the rest is margin.) An invocation that starts
//     within that second may still be routed by the old state: to the deployment that was active
//     a moment ago (never to another agent's or another tenant's), or refused as before.
//  2. The isolate that makes a routing change drops its entry at once (`forgetAgentRoute`, called
//     by the agents, deployments and deploy-job services after their write), so that isolate's
//     next invocation reads D1 again; a read already in flight is not reinstated.
//  3. Entries are keyed by user id and agent id together: a lookup by another tenant is another
//     key, reads D1, and gets the tenant-scoped "not found". A cached route is only ever served
//     to the user it was read for.
//  4. What a read found is cached, whatever it was (a deployment, disabled, no active deployment,
//     not found); a read that failed (D1 error) is never cached.
//  5. Concurrent lookups of a missing or expired entry share one D1 read (while it is younger than
//     ROUTE_CACHE_TTL_MS, so rule 1 holds for a slow read too). The request that starts the read
//     also hands it to waitUntil, so the read completes (and settles for the requests sharing it)
//     even if that request is cancelled first.
//  6. At most MAX_CACHED_ROUTES entries; beyond that the oldest entry is dropped.
// Rules 1, 2, 4, 5 and 6 are those of the isolate cache (src/lib/isolate-cache.ts).
//
// A running canary rollout (services/rollouts/) is part of the route, read by the same query: its
// candidate and the current stage's percent. So a rollout adds no D1 read per invocation, and its
// start, each stage, a promote and an abort reach every isolate under rule 1 like an activation;
// the services that change a rollout call forgetAgentRoute (rule 2). A rollout counts only while
// its baseline is still the active deployment and its candidate can still run.
import { and, eq, inArray, isNull } from "drizzle-orm";
import { alias } from "drizzle-orm/sqlite-core";
import type { Db } from "../../db/client";
import { agents, type DeploymentRow, deployments, rollouts } from "../../db/schema";
import { IsolateCache } from "../../lib/isolate-cache";

export const ROUTE_CACHE_TTL_MS = 1000;
const MAX_CACHED_ROUTES = 10_000;

/** The running rollout of a routed agent: `percent` of its traffic goes to `candidate`. */
export type RouteRollout = { id: string; percent: number; candidate: DeploymentRow };

export type AgentRoute =
  | { kind: "deployment"; deployment: DeploymentRow; rollout: RouteRollout | null }
  | { kind: "disabled" }
  | { kind: "no_active_deployment" }
  | { kind: "not_found" };

// `${userId} ${agentId}` -> the route, up to ROUTE_CACHE_TTL_MS stale (rule 1: within the API's 2 s).
const routes = new IsolateCache<string, AgentRoute>({ maxEntries: MAX_CACHED_ROUTES, ttlMs: ROUTE_CACHE_TTL_MS });

const keyOf = (userId: string, agentId: string) => `${userId} ${agentId}`;

/** The agent's route for this user: cached under the rules above, else read from D1. */
export function agentRoute(
  db: Db,
  input: { userId: string; agentId: string },
  opts: { now?: number; waitUntil?: (promise: Promise<unknown>) => void } = {},
): Promise<AgentRoute> {
  return routes.get(keyOf(input.userId, input.agentId), () => readAgentRoute(db, input), opts);
}

/** Drops this isolate's cached route of an agent (rule 2): call after changing it in D1. */
export function forgetAgentRoute(input: { userId: string; agentId: string }): void {
  routes.delete(keyOf(input.userId, input.agentId));
}

const candidates = alias(deployments, "candidate");

/** The agent (tenant-scoped, not deleted), its active deployment and its running rollout, in one query. */
async function readAgentRoute(db: Db, input: { userId: string; agentId: string }): Promise<AgentRoute> {
  const [found] = await db
    .select({
      agentStatus: agents.status,
      deployment: deployments,
      rollout: { id: rollouts.id, stages: rollouts.stages, stageIndex: rollouts.stageIndex },
      candidate: candidates,
    })
    .from(agents)
    .leftJoin(
      deployments,
      and(
        eq(deployments.id, agents.activeDeploymentId),
        eq(deployments.userId, agents.userId),
        eq(deployments.status, "active"),
      ),
    )
    .leftJoin(
      rollouts,
      and(
        eq(rollouts.agentId, agents.id),
        eq(rollouts.userId, agents.userId),
        eq(rollouts.status, "running"),
        eq(rollouts.baselineDeploymentId, agents.activeDeploymentId),
      ),
    )
    .leftJoin(
      candidates,
      and(
        eq(candidates.id, rollouts.candidateDeploymentId),
        eq(candidates.agentId, agents.id),
        inArray(candidates.status, ["ready", "inactive"]),
        isNull(candidates.scriptRemovedAt),
      ),
    )
    .where(and(eq(agents.id, input.agentId), eq(agents.userId, input.userId), isNull(agents.deletedAt)))
    .limit(1);
  if (!found) return { kind: "not_found" };
  if (found.agentStatus === "disabled") return { kind: "disabled" };
  if (!found.deployment) return { kind: "no_active_deployment" };
  const stage = found.rollout?.stages[found.rollout.stageIndex];
  const rollout =
    found.rollout && found.candidate && stage
      ? { id: found.rollout.id, percent: stage.percent, candidate: found.candidate }
      : null;
  return { kind: "deployment", deployment: found.deployment, rollout };
}
