// The one place every rollout lifecycle change goes through once it is committed: started,
// advanced (to the next stage), aborted (automatically or by the user), completed (promoted or
// past its last stage). Today it records an audit entry; lifecycle webhooks (rollout.advanced,
// rollout.aborted, rollout.completed) are to be sent from here too, so no caller needs to know.
// Only the caller whose conditional update won the transition calls it, so each change is
// announced once. It never throws: the change has happened whatever becomes of its announcement.
import type { Db } from "../../db/client";
import type { RolloutRow } from "../../db/schema";
import { describeError, logError, logInfo } from "../../lib/logger";
import { recordAudit } from "../audit/audit";

export type RolloutChange = "started" | "advanced" | "aborted" | "completed";

/** Who made a change: the user (`user:<id>`) or the gateway's evaluator. */
export const EVALUATOR_ACTOR = "system:rollout-evaluator";

export type RolloutEventDeps = { db: Db; actor: string; now?: number };

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
}
