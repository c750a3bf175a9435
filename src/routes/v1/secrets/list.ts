import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { listAgentSecrets } from "../../../services/secrets/secrets";
import { AgentIdParam, bearerSecurity, problemResponses } from "../../openapi-shared";
import { SecretSchema, toSecretResponse } from "./schemas";

const route = createRoute({
  method: "get",
  path: "/v1/agents/{agentId}/secrets",
  tags: ["secrets"],
  summary: "List an agent's secret names (values are never returned)",
  security: bearerSecurity,
  request: { params: AgentIdParam },
  responses: {
    200: {
      description: "The agent's secrets, by name",
      content: { "application/json": { schema: z.object({ secrets: z.array(SecretSchema) }) } },
    },
    ...problemResponses,
  },
});

export function registerListSecrets(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const secrets = await listAgentSecrets({ db: createDb(c.env.DB), userId: c.get("userId") }, agentId);
    return c.json({ secrets: secrets.map(toSecretResponse) }, 200);
  });
}
