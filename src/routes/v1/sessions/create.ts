import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createSession } from "../../../services/sessions/sessions";
import { AgentIdParam, bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { SessionEnvelope, sessionDeps, toSessionResponse } from "./schemas";

/** No fields yet: the body may be absent or `{}` (an unknown field is a 400). */
const CreateSessionBody = z.strictObject({}).openapi("CreateSessionRequest");

const route = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/sessions",
    operationId: "createSession",
    tags: ["sessions"],
    summary:
      "Start a session pinned to the agent's active deployment: invoke with its id as `sessionId` and every turn goes there",
    request: {
      params: AgentIdParam,
      body: { required: false, content: { "application/json": { schema: CreateSessionBody } } },
    },
    responses: {
      201: { description: "The session", content: { "application/json": { schema: SessionEnvelope } } },
      ...commonProblems,
      ...bodyProblems,
      409: problemDoc("The agent is disabled or has no active deployment"),
    },
  },
  { scope: "invoke" },
);

export function registerCreateSession(app: App) {
  app.openapi(route, async (c) => {
    const session = await createSession(sessionDeps(c), c.req.valid("param").agentId);
    return c.json({ session: toSessionResponse(session) }, 201);
  });
}
