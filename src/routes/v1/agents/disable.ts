import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { disableAgent } from "../../../services/agents/agents";
import { AgentIdParam, bearerSecurity, problemResponses } from "../../openapi-shared";
import { AgentEnvelope, toAgentResponse } from "./schemas";

const route = createRoute({
  method: "post",
  path: "/v1/agents/{agentId}/disable",
  tags: ["agents"],
  summary: "Disable an agent: invocations and deploys are refused until it is re-created",
  security: bearerSecurity,
  request: { params: AgentIdParam },
  responses: {
    200: { description: "The disabled agent", content: { "application/json": { schema: AgentEnvelope } } },
    ...problemResponses,
  },
});

export function registerDisableAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const agent = await disableAgent({ db: createDb(c.env.DB), userId: c.get("userId") }, agentId);
    return c.json({ agent: toAgentResponse(agent) }, 200);
  });
}
