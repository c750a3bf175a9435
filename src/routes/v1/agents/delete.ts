import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { describeError, logError } from "../../../lib/logger";
import { deleteAgent } from "../../../services/agents/agents";
import { AgentIdParam, bearerSecurity, problemResponses } from "../../openapi-shared";

const route = createRoute({
  method: "delete",
  path: "/v1/agents/{agentId}",
  tags: ["agents"],
  summary: "Delete an agent (it disappears from every later read)",
  security: bearerSecurity,
  request: { params: AgentIdParam },
  responses: {
    204: { description: "Deleted" },
    ...problemResponses,
  },
});

export function registerDeleteAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const userId = c.get("userId");
    await deleteAgent({ db: createDb(c.env.DB), userId }, agentId);
    // Its runtime scripts are removed by a queued job (retried until the runtime confirms). The
    // agent is gone for every API read either way, so a failed enqueue is logged, not returned.
    try {
      await c.env.DEPLOY_QUEUE.send({ type: "cleanup_agent_scripts", userId, agentId });
    } catch (err) {
      logError("cleanup_enqueue_failed", { agentId, requestId: c.get("requestId"), error: describeError(err) });
    }
    return c.body(null, 204);
  });
}
