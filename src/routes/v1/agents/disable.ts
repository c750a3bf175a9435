import type { App } from "../../../app";
import { disableAgent } from "../../../services/agents/agents";
import { AgentIdParam, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { AgentEnvelope, toAgentResponse } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/disable",
    operationId: "disableAgent",
    tags: ["agents"],
    summary: "Disable an agent: invocations and deploys are refused until it is re-created",
    request: { params: AgentIdParam },
    responses: {
      200: { description: "The disabled agent", content: { "application/json": { schema: AgentEnvelope } } },
      ...commonProblems,
    },
  },
  { scope: "agents:write" },
);

export function registerDisableAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const agent = await disableAgent({ db: c.var.services.db, userId: c.var.userId }, agentId);
    return c.json({ agent: toAgentResponse(agent) }, 200);
  });
}
