import type { App } from "../../../app";
import { getRun } from "../../../services/runs/runs";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { RunEnvelope, RunIdParam, runDeps } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/runs/{runId}",
    operationId: "getRun",
    tags: ["runs"],
    summary: "Read a run: its status and when it started and ended",
    request: { params: RunIdParam },
    responses: {
      200: { description: "The run", content: { "application/json": { schema: RunEnvelope } } },
      ...commonProblems,
    },
  },
  { scope: "invoke" },
);

export function registerGetRun(app: App) {
  app.openapi(route, async (c) => {
    const run = await getRun(runDeps(c), c.req.valid("param").runId);
    return c.json({ run }, 200);
  });
}
