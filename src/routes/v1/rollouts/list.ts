import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { limitParam } from "../../../lib/pagination";
import { listRollouts } from "../../../services/rollouts/rollouts";
import { AgentIdParam, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { RolloutSchema, toRolloutResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/rollouts",
    operationId: "listRollouts",
    tags: ["rollouts"],
    summary: "List an agent's rollouts, newest first (the running one, if any, is the first)",
    request: { params: AgentIdParam, query: z.object({ limit: limitParam(z, 20, 100) }) },
    responses: {
      200: {
        description: "The agent's rollouts",
        content: { "application/json": { schema: z.object({ rollouts: z.array(RolloutSchema) }) } },
      },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerListRollouts(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const { limit } = c.req.valid("query");
    const rows = await listRollouts({ db: c.var.services.db, userId: c.var.userId }, agentId, limit);
    return c.json({ rollouts: rows.map(toRolloutResponse) }, 200);
  });
}
