import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { createDeployment } from "../../../services/deployments/create";
import { AgentIdParam, bearerSecurity, problemResponse, problemResponses } from "../../openapi-shared";
import { DeployBody, DeploymentEnvelope, toDeploymentResponse } from "./schemas";

const route = createRoute({
  method: "post",
  path: "/v1/agents/{agentId}/deploy",
  tags: ["deployments"],
  summary: "Deploy code (or the built-in template) as a new immutable deployment; it becomes active asynchronously",
  security: bearerSecurity,
  request: {
    params: AgentIdParam,
    body: { required: false, content: { "application/json": { schema: DeployBody } } },
  },
  responses: {
    202: {
      description: "Accepted: the deployment is `deploying`; poll it until `active` or `failed`",
      content: { "application/json": { schema: DeploymentEnvelope } },
    },
    ...problemResponses,
    403: problemResponse("The plan's deploys per day are used up (plan_limit_exceeded)"),
    409: problemResponse("The agent is disabled"),
    413: problemResponse("moduleCode or the body is too large"),
    503: problemResponse("The deploy queue is unavailable (the deployment is marked failed)"),
  },
});

export function registerDeploy(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const input = c.req.valid("json") ?? {};
    const deployment = await createDeployment(
      {
        db: createDb(c.env.DB),
        userId: c.get("userId"),
        keyring: c.get("config").keyring,
        tierLimits: c.get("config").tierLimits,
        queue: c.env.DEPLOY_QUEUE,
      },
      agentId,
      input,
    );
    c.header("location", `/v1/agents/${agentId}/deployments/${deployment.id}`);
    return c.json({ deployment: toDeploymentResponse(deployment) }, 202);
  });
}
