import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { deleteAgent } from "../../../services/agents/agents";
import { AgentIdParam, bearerSecurity, problemResponses } from "../../openapi-shared";

const route = createRoute({
  method: "delete",
  path: "/v1/agents/{agentId}",
  tags: ["agents"],
  summary: "Delete an agent (it disappears from every later read)",
  security: bearerSecurity,
  request: { params: AgentIdParam },
  responses: {
    204: { description: "Deleted" },
    ...problemResponses,
  },
});

export function registerDeleteAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    await deleteAgent({ db: createDb(c.env.DB), userId: c.get("userId") }, agentId);
    return c.body(null, 204);
  });
}
