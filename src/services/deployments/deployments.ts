// Reading and activating deployments. Every query is scoped by the caller's user id (through
// getAgent, which also hides deleted agents); another user's deployment is "not found".
// A deployment whose runtime script was removed (script_removed_at, see services/cleanup) can no
// longer be activated. Invariant kept by every write here and in deploy-job.ts, each a db.batch:
// a deployment is `active` exactly when its agent's active_deployment_id names it.
import { and, desc, eq, inArray, ne, type SQL, sql } from "drizzle-orm";
import { agents, type DeploymentRow, type DeploymentStatus, deployments } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { isIdOf } from "../../lib/ids";
import { getAgent } from "../agents/agents";
import { forgetAgentRoute } from "../invoke/route-cache";
import type { TenantDeps } from "../tenant";
import { announceDeployment } from "../webhooks/deployment-events";
import type { WebhookQueue } from "../webhooks/queue";

export type { DeploymentRow };

export function deploymentNotFound(deploymentId: string): ApiError {
  return new ApiError("not_found", `deployment ${deploymentId} not found`);
}

export async function getDeployment(deps: TenantDeps, agentId: string, deploymentId: string): Promise<DeploymentRow> {
  await getAgent(deps, agentId);
  if (!isIdOf("deployment", deploymentId)) throw deploymentNotFound(deploymentId);
  const row = await deps.db.query.deployments.findFirst({
    where: and(eq(deployments.id, deploymentId), eq(deployments.agentId, agentId), eq(deployments.userId, deps.userId)),
  });
  if (!row) throw deploymentNotFound(deploymentId);
  return row;
}

export async function listDeployments(
  deps: TenantDeps,
  agentId: string,
  input: { limit: number; status?: DeploymentStatus; includeInactive: boolean },
): Promise<DeploymentRow[]> {
  await getAgent(deps, agentId);
  return listDeploymentsQuery(deps, agentId, input);
}

/**
 * The query listDeployments runs (exported so a test can EXPLAIN its exact SQL). It reads through
 * deployments_agent_created_idx whatever the planner's statistics say: the user and status terms
 * are written with a unary `+` (SQLite's documented way to disqualify a term from index use), so
 * the agent index is the only one with an equality constraint, and it yields the created_at order.
 */
export function listDeploymentsQuery(
  deps: TenantDeps,
  agentId: string,
  input: { limit: number; status?: DeploymentStatus; includeInactive: boolean },
) {
  return deps.db
    .select()
    .from(deployments)
    .where(
      and(
        eq(deployments.agentId, agentId),
        sql`+${deployments.userId} = ${deps.userId}`,
        input.status ? sql`+${deployments.status} = ${input.status}` : undefined,
        input.includeInactive ? undefined : sql`+${deployments.status} <> 'inactive'`,
      ),
    )
    .orderBy(desc(deployments.createdAt), desc(deployments.id))
    .limit(input.limit);
}

/**
 * Activation: points the agent at a `ready` deployment (a manual deploy, docs/writing-an-agent.md,
 * "Releasing by hand") or, as a rollback ("Rolling back"), at an earlier one that once went active. One
 * batch: move the pointer (only if the target qualifies), demote the previously active one, and
 * promote the target, the last two conditioned on the pointer having moved.
 */
export async function activateDeployment(
  deps: TenantDeps & { webhookQueue?: WebhookQueue },
  agentId: string,
  deploymentId: string,
): Promise<DeploymentRow> {
  const agent = await getAgent(deps, agentId);
  if (agent.status === "disabled") {
    throw new ApiError("agent_disabled", `agent ${agentId} is disabled; its deployments cannot be activated`);
  }
  const target = await getDeployment(deps, agentId, deploymentId);
  if (target.status === "active" && agent.activeDeploymentId === deploymentId) return target;

  const { db } = deps;
  const [moved] = await db.batch(
    pointerMoveStatements(db, {
      userId: deps.userId,
      agentId,
      deploymentId,
      now: Date.now(),
      // Only a ready deployment, or one that was once active, with its code still in the runtime.
      qualifies: sql`EXISTS (SELECT 1 FROM ${deployments} WHERE ${deployments.id} = ${deploymentId}
                AND ${deployments.agentId} = ${agentId} AND ${deployments.scriptRemovedAt} IS NULL
                AND (${deployments.status} = 'ready' OR (${deployments.firstActivatedAt} IS NOT NULL
                  AND ${deployments.status} IN ('active', 'inactive'))))`,
    }),
  );
  // Invocations in this isolate route by the new pointer from now on (route-cache.ts, rule 2).
  forgetAgentRoute({ userId: deps.userId, agentId });
  if (moved.length === 0) {
    // Re-read to say precisely why (the agent may have changed between our reads and the batch).
    const fresh = await getAgent(deps, agentId);
    if (fresh.status === "disabled") throw new ApiError("agent_disabled", `agent ${agentId} is disabled`);
    const current = await getDeployment(deps, agentId, deploymentId);
    throw notActivatable(current);
  }
  // The pointer moved to it: `deployment.active` (an activation, a rollback).
  await announceDeployment(deps, deploymentId);
  return getDeployment(deps, agentId, deploymentId);
}

/**
 * The pointer move, as three statements for one `db.batch` (the caller may add its own): move the
 * agent's pointer to the target (only for a live, enabled agent of this user, and only when
 * `qualifies` holds), demote the previously active deployment and promote the target, the last
 * two conditioned on the pointer now naming the target. Activation and a rollout's completion
 * (services/rollouts/) both move the pointer through this; the first statement returns the agent's
 * id when it moved.
 */
export function pointerMoveStatements(
  db: TenantDeps["db"],
  input: { userId: string; agentId: string; deploymentId: string; now: number; qualifies: SQL },
) {
  const { agentId, deploymentId, now } = input;
  const pointsAtTarget = sql`(SELECT ${agents.activeDeploymentId} FROM ${agents} WHERE ${agents.id} = ${agentId}) = ${deploymentId}`;
  return [
    db
      .update(agents)
      .set({ activeDeploymentId: deploymentId, updatedAt: now })
      .where(
        and(
          eq(agents.id, agentId),
          eq(agents.userId, input.userId),
          sql`${agents.deletedAt} IS NULL`,
          eq(agents.status, "active"),
          input.qualifies,
        ),
      )
      .returning({ id: agents.id }),
    db
      .update(deployments)
      .set({ status: "inactive", updatedAt: now })
      .where(
        and(
          eq(deployments.agentId, agentId),
          eq(deployments.status, "active"),
          ne(deployments.id, deploymentId),
          pointsAtTarget,
        ),
      ),
    db
      .update(deployments)
      .set({
        status: "active",
        activatedAt: now,
        firstActivatedAt: sql`COALESCE(${deployments.firstActivatedAt}, ${now})`,
        updatedAt: now,
      })
      .where(and(eq(deployments.id, deploymentId), inArray(deployments.status, ["inactive", "ready"]), pointsAtTarget)),
  ] as const;
}

function notActivatable(row: DeploymentRow): ApiError {
  const why =
    row.status === "failed"
      ? "it failed to deploy"
      : row.status === "deploying"
        ? "it is still deploying"
        : row.scriptRemovedAt !== null
          ? "its code was removed from the runtime (retention keeps only the newest inactive deployments)"
          : "it never became active";
  return new ApiError(
    "deployment_not_activatable",
    `deployment ${row.id} cannot be activated: ${why}; only a ready deployment, or one that was once active, can be activated`,
    { extra: { deploymentStatus: row.status } },
  );
}
