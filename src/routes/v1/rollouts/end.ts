// POST …/rollouts/{rolloutId}/promote and …/abort: the user ends a running rollout.
import type { App } from "../../../app";
import { abortRolloutByUser, promoteRollout } from "../../../services/rollouts/rollouts";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { RolloutEnvelope, RolloutParams, toRolloutResponse } from "./schemas";

const promoteRoute = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/rollouts/{rolloutId}/promote",
    operationId: "promoteRollout",
    tags: ["rollouts"],
    summary: "Skip the remaining stages: the candidate becomes the active deployment now (as an activation does)",
    request: { params: RolloutParams },
    responses: {
      200: {
        description: "The completed rollout",
        content: { "application/json": { schema: RolloutEnvelope } },
      },
      ...commonProblems,
      409: problemDoc(
        "The rollout has already ended (rollout_ended), the agent is disabled, or it changed while promoting (conflict: try again)",
      ),
    },
  },
  { scope: "deploy" },
);

const abortRoute = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/rollouts/{rolloutId}/abort",
    operationId: "abortRollout",
    tags: ["rollouts"],
    summary: "Stop the rollout: all traffic goes back to the baseline, and a ready candidate becomes inactive",
    request: { params: RolloutParams },
    responses: {
      200: { description: "The aborted rollout", content: { "application/json": { schema: RolloutEnvelope } } },
      ...commonProblems,
      409: problemDoc("The rollout has already ended (rollout_ended)"),
    },
  },
  { scope: "deploy" },
);

export function registerEndRollout(app: App) {
  app.openapi(promoteRoute, async (c) => {
    const { agentId, rolloutId } = c.req.valid("param");
    const row = await promoteRollout(
      { db: c.var.services.db, userId: c.var.userId, webhookQueue: c.var.services.webhookQueue },
      agentId,
      rolloutId,
    );
    return c.json({ rollout: toRolloutResponse(row) }, 200);
  });
  app.openapi(abortRoute, async (c) => {
    const { agentId, rolloutId } = c.req.valid("param");
    const row = await abortRolloutByUser(
      { db: c.var.services.db, userId: c.var.userId, webhookQueue: c.var.services.webhookQueue },
      agentId,
      rolloutId,
    );
    return c.json({ rollout: toRolloutResponse(row) }, 200);
  });
}
