import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { agentRestriction } from "../../../auth/principal";
import { cursorParam, decodeCursor, encodeCursor, limitParam } from "../../../lib/pagination";
import { listAgents } from "../../../services/agents/agents";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { AgentSchema, toAgentResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents",
    operationId: "listAgents",
    tags: ["agents"],
    summary: "List your agents, newest first",
    request: {
      query: z.object({
        limit: limitParam(z, 20, 100),
        cursor: cursorParam(z),
      }),
    },
    responses: {
      200: {
        description: "A page of agents",
        content: {
          "application/json": {
            schema: z.object({ agents: z.array(AgentSchema), nextCursor: z.string().nullable() }),
          },
        },
      },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerListAgents(app: App) {
  app.openapi(route, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    const afterId = cursor ? decodeCursor(cursor, /^agt_[0-9a-z]{26}$/) : undefined;
    const { rows, hasMore } = await listAgents(
      { db: c.var.services.db, userId: c.var.userId },
      { limit, afterId, onlyIds: agentRestriction(c.var.principal) },
    );
    const last = rows.at(-1);
    return c.json(
      { agents: rows.map(toAgentResponse), nextCursor: hasMore && last ? encodeCursor(last.id) : null },
      200,
    );
  });
}
