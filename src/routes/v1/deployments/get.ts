import type { App } from "../../../app";
import { getDeployment } from "../../../services/deployments/deployments";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { DeploymentEnvelope, DeploymentParams, toDeploymentResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/deployments/{deploymentId}",
    operationId: "getDeployment",
    tags: ["deployments"],
    summary: "Read one deployment (poll it after a deploy)",
    request: { params: DeploymentParams },
    responses: {
      200: { description: "The deployment", content: { "application/json": { schema: DeploymentEnvelope } } },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerGetDeployment(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, deploymentId } = c.req.valid("param");
    const row = await getDeployment({ db: c.var.services.db, userId: c.var.userId }, agentId, deploymentId);
    return c.json({ deployment: toDeploymentResponse(row) }, 200);
  });
}
