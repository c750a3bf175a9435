import type { App } from "../../../app";
import { startBackgroundRun } from "../../../services/runs/start";
import { AgentIdParam, bodyProblems, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { callerInvokeBodyLimit, invokeDeps, upstreamProblems } from "../invoke/invoke";
import { InvokeRequestSchema } from "../invoke/schemas";
import { RunEnvelope } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/agents/{agentId}/runs",
    operationId: "startRun",
    tags: ["runs"],
    summary: "Start a background run: the agent is invoked with no client attached (read it with events or wait)",
    request: {
      params: AgentIdParam,
      body: { required: true, content: { "application/json": { schema: InvokeRequestSchema } } },
    },
    responses: {
      202: { description: "The run, started", content: { "application/json": { schema: RunEnvelope } } },
      ...commonProblems,
      ...bodyProblems,
      429: upstreamProblems[429],
      409: upstreamProblems[409],
    },
  },
  { bodyLimit: callerInvokeBodyLimit, scope: "invoke" },
);

export function registerStartRun(app: App) {
  app.openapi(route, async (c) => {
    const run = await startBackgroundRun(invokeDeps(c), c.req.valid("param").agentId, c.req.valid("json"));
    return c.json({ run }, 202);
  });
}
