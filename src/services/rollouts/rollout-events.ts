// The one place every rollout lifecycle change goes through once it is committed: started,
// advanced (to the next stage), aborted (automatically or by the user), completed (promoted or
// past its last stage). It records an audit entry and publishes the lifecycle webhook
// (rollout.advanced, rollout.aborted, rollout.completed; a start has none), and on completion the
// candidate's deployment.active, since the pointer moved without an activation.
// Only the caller whose conditional update won the transition calls it, so each change is
// announced once. It never throws: the change has happened whatever becomes of its announcement.
import type { Db } from "../../db/client";
import type { RolloutRow } from "../../db/schema";
import { describeError, logError, logInfo } from "../../lib/logger";
import { recordAudit } from "../audit/audit";
import { announceDeployment } from "../webhooks/deployment-events";
import { publishEvent } from "../webhooks/publish";
import type { WebhookQueue } from "../webhooks/queue";

export type RolloutChange = "started" | "advanced" | "aborted" | "completed";

/** Who made a change: the user (`user:<id>`) or the gateway's evaluator. */
export const EVALUATOR_ACTOR = "system:rollout-evaluator";

export type RolloutEventDeps = { db: Db; actor: string; now?: number; webhookQueue?: WebhookQueue };

export async function announceRolloutChange(
  deps: RolloutEventDeps,
  rollout: RolloutRow,
  change: RolloutChange,
  reason: string,
): Promise<void> {
  const stage = rollout.stages[rollout.stageIndex];
  const details = {
    agentId: rollout.agentId,
    candidateDeploymentId: rollout.candidateDeploymentId,
    baselineDeploymentId: rollout.baselineDeploymentId,
    stageIndex: rollout.stageIndex,
    percent: stage?.percent ?? null,
    reason: reason.slice(0, 500),
  };
  logInfo("rollout_change", { rolloutId: rollout.id, change, actor: deps.actor, ...details });
  try {
    await recordAudit(
      deps.db,
      {
        userId: rollout.userId,
        actor: deps.actor,
        action: `rollout.${change}`,
        targetType: "rollout",
        targetId: rollout.id,
        details,
      },
      { now: deps.now },
    );
  } catch (err) {
    logError("rollout_change_not_recorded", { rolloutId: rollout.id, change, error: describeError(err) });
  }
  const { webhookQueue } = deps;
  if (!webhookQueue || change === "started") return;
  // Both never throw (publish.ts, deployment-events.ts).
  await publishEvent(
    { db: deps.db, webhookQueue },
    { userId: rollout.userId, type: `rollout.${change}`, data: { rolloutId: rollout.id, ...details } },
  );
  if (change === "completed") await announceDeployment({ db: deps.db, webhookQueue }, rollout.candidateDeploymentId);
}
