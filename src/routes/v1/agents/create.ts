import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { agentRestriction } from "../../../auth/principal";
import { ApiError } from "../../../lib/errors";
import { createAgent } from "../../../services/agents/agents";
import { limitsForUser } from "../../../services/usage/user-tier";
import { bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { AgentDescription, AgentEnvelope, AgentName, toAgentResponse } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/agents",
    operationId: "createAgent",
    tags: ["agents"],
    summary: "Create an agent",
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
      ...commonProblems,
      ...bodyProblems,
      403: problemDoc("Plan limit reached, or an API key restricted to some agents"),
      409: problemDoc("Name already in use"),
    },
  },
  { scope: "agents:write" },
);

export function registerCreateAgent(app: App) {
  app.openapi(route, async (c) => {
    const input = c.req.valid("json");
    if (agentRestriction(c.var.principal) !== null) {
      // It could never reach the agent it made: a restricted key works on its agents only.
      throw new ApiError("forbidden", "an API key restricted to some agents cannot create agents");
    }
    const db = c.var.services.db;
    const userId = c.var.userId;
    const { tier, limits } = await limitsForUser(db, userId, c.var.services.tierLimits);
    const agent = await createAgent({ db, userId }, input, { tier, maxAgents: limits.agents });
    return c.json({ agent: toAgentResponse(agent) }, 201);
  });
}
