import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { deleteAgentSecret } from "../../../services/secrets/secrets";
import { bearerSecurity, problemResponses } from "../../openapi-shared";
import { SecretParams } from "./schemas";

const route = createRoute({
  method: "delete",
  path: "/v1/agents/{agentId}/secrets/{name}",
  tags: ["secrets"],
  summary: "Delete an agent secret (running deployments keep the snapshot they were deployed with)",
  security: bearerSecurity,
  request: { params: SecretParams },
  responses: {
    204: { description: "Deleted" },
    ...problemResponses,
  },
});

export function registerDeleteSecret(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, name } = c.req.valid("param");
    await deleteAgentSecret({ db: createDb(c.env.DB), userId: c.get("userId") }, { agentId, name });
    return c.body(null, 204);
  });
}
