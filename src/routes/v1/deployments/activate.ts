import type { App } from "../../../app";
import { activateDeployment } from "../../../services/deployments/deployments";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { DeploymentEnvelope, DeploymentParams, toDeploymentResponse } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/deployments/{deploymentId}/activate",
    operationId: "activateDeployment",
    tags: ["deployments"],
    summary: "Roll back (or forward) to a deployment that was once active; it serves every later invocation",
    request: { params: DeploymentParams },
    responses: {
      200: {
        description: "The now active deployment",
        content: { "application/json": { schema: DeploymentEnvelope } },
      },
      ...commonProblems,
      409: problemDoc("The deployment never became active, or the agent is disabled"),
    },
  },
  { scope: "deploy" },
);

export function registerActivateDeployment(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, deploymentId } = c.req.valid("param");
    const { db, webhookQueue } = c.var.services;
    const row = await activateDeployment({ db, userId: c.var.userId, webhookQueue }, agentId, deploymentId);
    return c.json({ deployment: toDeploymentResponse(row) }, 200);
  });
}
