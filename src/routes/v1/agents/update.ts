import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { updateAgent } from "../../../services/agents/agents";
import { AgentIdParam, bearerSecurity, problemResponse, problemResponses } from "../../openapi-shared";
import { AgentDescription, AgentEnvelope, AgentName, toAgentResponse } from "./schemas";

const route = createRoute({
  method: "patch",
  path: "/v1/agents/{agentId}",
  tags: ["agents"],
  summary: "Rename an agent or change its description",
  security: bearerSecurity,
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
    ...problemResponses,
    409: problemResponse("Name already in use"),
  },
});

export function registerUpdateAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const patch = c.req.valid("json");
    const agent = await updateAgent({ db: createDb(c.env.DB), userId: c.get("userId") }, agentId, patch);
    return c.json({ agent: toAgentResponse(agent) }, 200);
  });
}
