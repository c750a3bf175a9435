import type { App } from "../../../app";
import { cancelRun } from "../../../services/runs/runs";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { RunEnvelope, RunIdParam, runDeps } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/runs/{runId}/cancel",
    operationId: "cancelRun",
    tags: ["runs"],
    summary: "Cancel a running run: the agent's request is aborted and the run ends `cancelled`",
    request: { params: RunIdParam },
    responses: {
      200: {
        description: "The run, ended `cancelled` (answered once the run has ended)",
        content: { "application/json": { schema: RunEnvelope } },
      },
      ...commonProblems,
      409: problemDoc("The run had already ended (run_ended)"),
    },
  },
  { scope: "invoke" },
);

export function registerCancelRun(app: App) {
  app.openapi(route, async (c) => {
    const run = await cancelRun(runDeps(c), c.req.valid("param").runId);
    return c.json({ run }, 200);
  });
}
