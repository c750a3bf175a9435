import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { createAgent } from "../../../services/agents/agents";
import { limitsForUser } from "../../../services/usage/user-tier";
import { bearerSecurity, problemResponse, problemResponses } from "../../openapi-shared";
import { AgentDescription, AgentEnvelope, AgentName, toAgentResponse } from "./schemas";

const route = createRoute({
  method: "post",
  path: "/v1/agents",
  tags: ["agents"],
  summary: "Create an agent",
  security: bearerSecurity,
  request: {
    body: {
      required: true,
      content: {
        "application/json": {
          schema: z.strictObject({ name: AgentName, description: AgentDescription.optional() }),
        },
      },
    },
  },
  responses: {
    201: { description: "Created", content: { "application/json": { schema: AgentEnvelope } } },
    ...problemResponses,
    403: problemResponse("Plan limit reached"),
    409: problemResponse("Name already in use"),
    413: problemResponse("Body too large"),
  },
});

export function registerCreateAgent(app: App) {
  app.openapi(route, async (c) => {
    const input = c.req.valid("json");
    const db = createDb(c.env.DB);
    const userId = c.get("userId");
    const { tier, limits } = await limitsForUser(db, userId, c.get("config").tierLimits);
    const agent = await createAgent({ db, userId }, input, { tier, maxAgents: limits.agents });
    return c.json({ agent: toAgentResponse(agent) }, 201);
  });
}
