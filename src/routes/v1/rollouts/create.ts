import type { App } from "../../../app";
import { startRollout } from "../../../services/rollouts/rollouts";
import { AgentIdParam, bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { CreateRolloutBody, RolloutEnvelope, toRolloutResponse } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/rollouts",
    operationId: "createRollout",
    tags: ["rollouts"],
    summary:
      "Start a canary rollout: the candidate serves a growing share of sessions, stage by stage, and the gateway aborts it when its own measurements breach abortOn",
    request: {
      params: AgentIdParam,
      body: { required: true, content: { "application/json": { schema: CreateRolloutBody } } },
    },
    responses: {
      201: { description: "The running rollout", content: { "application/json": { schema: RolloutEnvelope } } },
      ...commonProblems,
      ...bodyProblems,
      400: problemDoc(
        "Invalid stages or abortOn (validation_failed), or a deployment that cannot be rolled out (invalid_rollout_candidate)",
      ),
      409: problemDoc(
        "The agent already has a running rollout (rollout_in_progress), has no active deployment, or is disabled; or the agent or candidate changed while it started (conflict: try again)",
      ),
    },
  },
  { scope: "deploy", bodyLimit: 16 * 1024 },
);

export function registerCreateRollout(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const { db, webhookQueue } = c.var.services;
    const row = await startRollout({ db, userId: c.var.userId, webhookQueue }, agentId, c.req.valid("json"));
    return c.json({ rollout: toRolloutResponse(row) }, 201);
  });
}
