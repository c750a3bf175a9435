import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { activateDeployment } from "../../../services/deployments/deployments";
import { bearerSecurity, problemResponse, problemResponses } from "../../openapi-shared";
import { DeploymentEnvelope, DeploymentParams, toDeploymentResponse } from "./schemas";

const route = createRoute({
  method: "post",
  path: "/v1/agents/{agentId}/deployments/{deploymentId}/activate",
  tags: ["deployments"],
  summary: "Roll back (or forward) to a deployment that was once active; it serves every later invocation",
  security: bearerSecurity,
  request: { params: DeploymentParams },
  responses: {
    200: { description: "The now active deployment", content: { "application/json": { schema: DeploymentEnvelope } } },
    ...problemResponses,
    409: problemResponse("The deployment never became active, or the agent is disabled"),
  },
});

export function registerActivateDeployment(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, deploymentId } = c.req.valid("param");
    const row = await activateDeployment({ db: createDb(c.env.DB), userId: c.get("userId") }, agentId, deploymentId);
    return c.json({ deployment: toDeploymentResponse(row) }, 200);
  });
}
