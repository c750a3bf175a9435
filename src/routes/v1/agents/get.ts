import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { getAgent } from "../../../services/agents/agents";
import { AgentIdParam, bearerSecurity, problemResponses } from "../../openapi-shared";
import { AgentEnvelope, toAgentResponse } from "./schemas";

const route = createRoute({
  method: "get",
  path: "/v1/agents/{agentId}",
  tags: ["agents"],
  summary: "Read an agent",
  security: bearerSecurity,
  request: { params: AgentIdParam },
  responses: {
    200: { description: "The agent", content: { "application/json": { schema: AgentEnvelope } } },
    ...problemResponses,
  },
});

export function registerGetAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const agent = await getAgent({ db: createDb(c.env.DB), userId: c.get("userId") }, agentId);
    return c.json({ agent: toAgentResponse(agent) }, 200);
  });
}
