import type { App } from "../../../app";
import { getRollout } from "../../../services/rollouts/rollouts";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { RolloutEnvelope, RolloutParams, toRolloutResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/rollouts/{rolloutId}",
    operationId: "getRollout",
    tags: ["rollouts"],
    summary: "A rollout: its stage, the candidate's current share, its last evaluation and why it ended",
    request: { params: RolloutParams },
    responses: {
      200: { description: "The rollout", content: { "application/json": { schema: RolloutEnvelope } } },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerGetRollout(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, rolloutId } = c.req.valid("param");
    const row = await getRollout({ db: c.var.services.db, userId: c.var.userId }, agentId, rolloutId);
    return c.json({ rollout: toRolloutResponse(row) }, 200);
  });
}
