import type { App } from "../../../app";
import { ApiError } from "../../../lib/errors";
import type { BodyLimit } from "../../../middleware/body-guard";
import { createDeployment } from "../../../services/deployments/create";
import { limitsForUser } from "../../../services/usage/user-tier";
import { AgentIdParam, bodyProblems, commonProblems, headers, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { DeployBody, DeploymentEnvelope, toDeploymentResponse } from "./schemas";

/**
 * The body may be twice the caller's `bundleBytes` (JSON escaping can double text; base64 adds a
 * third) plus room for the rest of the body; the decoded bundle is checked against `bundleBytes`.
 */
export const callerDeployBodyLimit: BodyLimit = async (c) => {
  const { db, tierLimits, waitUntil } = c.var.services;
  const { tier, limits } = await limitsForUser(db, c.var.userId, tierLimits, { waitUntil });
  const maxBytes = 2 * limits.bundleBytes + 64 * 1024;
  return {
    maxBytes,
    tooLarge: () =>
      new ApiError(
        "payload_too_large",
        `the deploy body is over ${maxBytes} bytes; the ${tier} plan allows bundles of ${limits.bundleBytes} bytes (limit: bundleBytes)`,
        { extra: { limit: "bundleBytes", tier, limitBytes: limits.bundleBytes } },
      ),
  };
};

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
        description:
          "Accepted: the deployment is `deploying`; poll it (Location) until `active` (`ready` for `activation: manual`) or `failed`",
        headers: headers("Location"),
        content: { "application/json": { schema: DeploymentEnvelope } },
      },
      ...commonProblems,
      ...bodyProblems,
      403: problemDoc("The plan's deploys per day are used up (plan_limit_exceeded)"),
      409: problemDoc("The agent is disabled"),
      400: problemDoc(
        "A module name, type, encoding, mainModuleName or compatibility flag is not acceptable (the problem names it)",
      ),
      413: problemDoc("The bundle is over the plan's bundleBytes, has too many modules, or the body is too large"),
      503: problemDoc("The deploy queue is unavailable (the deployment is marked failed)"),
    },
  },
  { bodyLimit: callerDeployBodyLimit, scope: "deploy" },
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
        artifacts: requireArtifacts(c.var.services.artifacts),
        queue: c.var.services.deployQueue,
        providerUnavailable: c.var.services.runtimeProviderUnavailable,
      },
      agentId,
      input,
    );
    c.header("location", `/v1/agents/${agentId}/deployments/${deployment.id}`);
    return c.json({ deployment: toDeploymentResponse(deployment) }, 202);
  });
}

function requireArtifacts<T>(bucket: T | undefined): T {
  if (bucket) return bucket;
  throw new ApiError("service_unavailable", "the artifact store (ARTIFACTS binding) is not configured", {
    headers: { "retry-after": "30" },
  });
}
