import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { listAgentSecrets } from "../../../services/secrets/secrets";
import { AgentIdParam, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { SecretSchema, toSecretResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/secrets",
    operationId: "listAgentSecrets",
    tags: ["secrets"],
    summary: "List an agent's secret names (values are never returned)",
    request: { params: AgentIdParam },
    responses: {
      200: {
        description: "The agent's secrets, by name",
        content: { "application/json": { schema: z.object({ secrets: z.array(SecretSchema) }) } },
      },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerListSecrets(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const secrets = await listAgentSecrets({ db: c.var.services.db, userId: c.var.userId }, agentId);
    return c.json({ secrets: secrets.map(toSecretResponse) }, 200);
  });
}
