import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { getDeployment } from "../../../services/deployments/deployments";
import { bearerSecurity, problemResponses } from "../../openapi-shared";
import { DeploymentEnvelope, DeploymentParams, toDeploymentResponse } from "./schemas";

const route = createRoute({
  method: "get",
  path: "/v1/agents/{agentId}/deployments/{deploymentId}",
  tags: ["deployments"],
  summary: "Read one deployment (poll it after a deploy)",
  security: bearerSecurity,
  request: { params: DeploymentParams },
  responses: {
    200: { description: "The deployment", content: { "application/json": { schema: DeploymentEnvelope } } },
    ...problemResponses,
  },
});

export function registerGetDeployment(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, deploymentId } = c.req.valid("param");
    const row = await getDeployment({ db: createDb(c.env.DB), userId: c.get("userId") }, agentId, deploymentId);
    return c.json({ deployment: toDeploymentResponse(row) }, 200);
  });
}
