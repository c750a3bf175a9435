import type { App } from "../../../app";
import { createDeployment } from "../../../services/deployments/create";
import { MODULE_CODE_MAX_BYTES } from "../../../services/deployments/defaults";
import { AgentIdParam, bodyProblems, commonProblems, headers, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { DeployBody, DeploymentEnvelope, toDeploymentResponse } from "./schemas";

/** JSON escaping can double a module's size; the module itself is checked against its own limit. */
const DEPLOY_BODY_LIMIT_BYTES = 2 * MODULE_CODE_MAX_BYTES + 64 * 1024;

const route = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/deploy",
    operationId: "deployAgent",
    tags: ["deployments"],
    summary: "Deploy code (or the built-in template) as a new immutable deployment; it becomes active asynchronously",
    request: {
      params: AgentIdParam,
      body: { required: false, content: { "application/json": { schema: DeployBody } } },
    },
    responses: {
      202: {
        description: "Accepted: the deployment is `deploying`; poll it (Location) until `active` or `failed`",
        headers: headers("Location"),
        content: { "application/json": { schema: DeploymentEnvelope } },
      },
      ...commonProblems,
      ...bodyProblems,
      403: problemDoc("The plan's deploys per day are used up (plan_limit_exceeded)"),
      409: problemDoc("The agent is disabled"),
      413: problemDoc("moduleCode or the body is too large"),
      503: problemDoc("The deploy queue is unavailable (the deployment is marked failed)"),
    },
  },
  { bodyLimit: DEPLOY_BODY_LIMIT_BYTES, scope: "deploy" },
);

export function registerDeploy(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const input = c.req.valid("json") ?? {};
    const deployment = await createDeployment(
      {
        db: c.var.services.db,
        userId: c.var.userId,
        keyring: c.var.services.keyring,
        tierLimits: c.var.services.tierLimits,
        queue: c.var.services.deployQueue,
      },
      agentId,
      input,
    );
    c.header("location", `/v1/agents/${agentId}/deployments/${deployment.id}`);
    return c.json({ deployment: toDeploymentResponse(deployment) }, 202);
  });
}
