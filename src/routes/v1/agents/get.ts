import type { App } from "../../../app";
import { getAgent } from "../../../services/agents/agents";
import { AgentIdParam, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { AgentEnvelope, toAgentResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}",
    operationId: "getAgent",
    tags: ["agents"],
    summary: "Read an agent",
    request: { params: AgentIdParam },
    responses: {
      200: { description: "The agent", content: { "application/json": { schema: AgentEnvelope } } },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerGetAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const agent = await getAgent({ db: c.var.services.db, userId: c.var.userId }, agentId);
    return c.json({ agent: toAgentResponse(agent) }, 200);
  });
}
