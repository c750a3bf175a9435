import type { App } from "../../../app";
import { describeError, logError } from "../../../lib/logger";
import { deleteAgent } from "../../../services/agents/agents";
import { AgentIdParam, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";

const route = userRoute(
  {
    method: "delete",
    path: "/v1/agents/{agentId}",
    operationId: "deleteAgent",
    tags: ["agents"],
    summary: "Delete an agent (it disappears from every later read)",
    request: { params: AgentIdParam },
    responses: {
      204: { description: "Deleted" },
      ...commonProblems,
    },
  },
  { scope: "agents:write" },
);

export function registerDeleteAgent(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const userId = c.var.userId;
    await deleteAgent({ db: c.var.services.db, userId }, agentId);
    // Its runtime scripts are removed by a queued job (retried until the runtime confirms). The
    // agent is gone for every API read either way, so a failed enqueue is logged, not returned.
    try {
      await c.var.services.deployQueue.send({ type: "cleanup_agent_scripts", userId, agentId });
    } catch (err) {
      logError("cleanup_enqueue_failed", { agentId, requestId: c.var.requestId, error: describeError(err) });
    }
    return c.body(null, 204);
  });
}
