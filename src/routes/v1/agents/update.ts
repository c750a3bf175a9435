import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { updateAgent } from "../../../services/agents/agents";
import { AgentIdParam, bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { AgentDescription, AgentEnvelope, AgentName, toAgentResponse } from "./schemas";

const route = userRoute(
  {
    method: "patch",
    path: "/v1/agents/{agentId}",
    operationId: "updateAgent",
    tags: ["agents"],
    summary: "Rename an agent or change its description",
    request: {
      params: AgentIdParam,
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z.strictObject({ name: AgentName.optional(), description: AgentDescription.nullable().optional() }),
          },
        },
      },
    },
    responses: {
      200: { description: "The updated agent", content: { "application/json": { schema: AgentEnvelope } } },
      ...commonProblems,
      ...bodyProblems,
      409: problemDoc("Name already in use"),
    },
  },
  { scope: "agents:write" },
);

export function registerUpdateAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const patch = c.req.valid("json");
    const agent = await updateAgent({ db: c.var.services.db, userId: c.var.userId }, agentId, patch);
    return c.json({ agent: toAgentResponse(agent) }, 200);
  });
}
