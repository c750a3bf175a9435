import type { App } from "../../../app";
import { getSession } from "../../../services/sessions/sessions";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { SessionEnvelope, SessionParams, sessionDeps, toSessionResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/sessions/{sessionId}",
    operationId: "getSession",
    tags: ["sessions"],
    summary: "Read a session: its pinned deployment, turn count, last use and expiry",
    request: { params: SessionParams },
    responses: {
      200: { description: "The session", content: { "application/json": { schema: SessionEnvelope } } },
      ...commonProblems,
    },
  },
  { scope: "invoke" },
);

export function registerGetSession(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, sessionId } = c.req.valid("param");
    const session = await getSession(sessionDeps(c), agentId, sessionId);
    return c.json({ session: toSessionResponse(session) }, 200);
  });
}
