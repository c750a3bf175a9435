import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { waitForRun } from "../../../services/runs/runs";
import { MAX_RUN_WAIT_SECONDS } from "../../../services/runs/types";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { InvokeResponseSchema } from "../invoke/schemas";
import { RunIdParam, RunSchema, runDeps } from "./schemas";

const WaitAnswer = z
  .object({
    run: RunSchema,
    response: InvokeResponseSchema.optional().openapi({ description: "succeeded: the agent's invoke/v1 answer" }),
    error: z
      .object({ code: z.string(), message: z.string() })
      .optional()
      .openapi({ description: "failed, cancelled, timed_out: the run's terminal error event" }),
  })
  .openapi("RunWaitAnswer");

const route = userRoute(
  {
    method: "get",
    path: "/v1/runs/{runId}/wait",
    operationId: "waitForRun",
    tags: ["runs"],
    summary: "Wait for a run to end (up to timeoutSeconds): 200 with its answer once ended, 202 while running",
    request: {
      params: RunIdParam,
      query: z.object({
        timeoutSeconds: z
          .string()
          .regex(/^[0-9]{1,2}$/, "timeoutSeconds must be an integer from 0 to 60")
          .refine((v) => Number(v) <= MAX_RUN_WAIT_SECONDS, "timeoutSeconds must be at most 60")
          .optional()
          .openapi({ description: "How long to wait, 0 to 60 seconds (default 30)", example: "30" }),
      }),
    },
    responses: {
      200: {
        description: "The run has ended: `response` (succeeded) or `error`",
        content: { "application/json": { schema: WaitAnswer } },
      },
      202: {
        description: "The run is still running",
        content: { "application/json": { schema: WaitAnswer } },
      },
      ...commonProblems,
    },
  },
  { scope: "invoke" },
);

export function registerWaitForRun(app: App) {
  app.openapi(route, async (c) => {
    const timeoutSeconds = Number(c.req.valid("query").timeoutSeconds ?? 30);
    const result = await waitForRun(runDeps(c), c.req.valid("param").runId, timeoutSeconds);
    return c.json(result as z.infer<typeof WaitAnswer>, result.run.status === "running" ? 202 : 200);
  });
}
