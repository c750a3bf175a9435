import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { DEPLOYMENT_STATUSES } from "../../../db/schema";
import { limitParam } from "../../../lib/pagination";
import { listDeployments } from "../../../services/deployments/deployments";
import { AgentIdParam, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { DeploymentSchema, toDeploymentResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/deployments",
    operationId: "listDeployments",
    tags: ["deployments"],
    summary: "List an agent's deployments, newest first",
    request: {
      params: AgentIdParam,
      query: z.object({
        limit: limitParam(z, 50, 200),
        status: z
          .enum(DEPLOYMENT_STATUSES)
          .optional()
          .openapi({ param: { name: "status", in: "query" } }),
        includeInactive: z
          .enum(["true", "false"], { message: "includeInactive must be true or false" })
          .default("true")
          .transform((v) => v === "true")
          .openapi({ param: { name: "includeInactive", in: "query" }, type: "boolean", default: true }),
      }),
    },
    responses: {
      200: {
        description: "The agent's deployments",
        content: { "application/json": { schema: z.object({ deployments: z.array(DeploymentSchema) }) } },
      },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerListDeployments(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const query = c.req.valid("query");
    const rows = await listDeployments({ db: c.var.services.db, userId: c.var.userId }, agentId, query);
    return c.json({ deployments: rows.map(toDeploymentResponse) }, 200);
  });
}
