import type { App } from "../../../app";
import { endSession } from "../../../services/sessions/sessions";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { SessionParams, sessionDeps } from "./schemas";

const route = userRoute(
  {
    method: "delete",
    path: "/v1/agents/{agentId}/sessions/{sessionId}",
    operationId: "deleteSession",
    tags: ["sessions"],
    summary: "End a session: its pin and counts are deleted; the same id then starts a fresh session",
    request: { params: SessionParams },
    responses: {
      204: { description: "Ended" },
      ...commonProblems,
    },
  },
  { scope: "invoke" },
);

export function registerDeleteSession(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, sessionId } = c.req.valid("param");
    await endSession(sessionDeps(c), agentId, sessionId);
    return c.body(null, 204);
  });
}
