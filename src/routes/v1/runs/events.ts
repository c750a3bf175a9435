import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { ApiError } from "../../../lib/errors";
import { runEvents } from "../../../services/runs/runs";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { RunIdParam, runDeps } from "./schemas";

const EVENT_ID = /^(0|[1-9][0-9]{0,8})$/;

const route = userRoute(
  {
    method: "get",
    path: "/v1/runs/{runId}/events",
    operationId: "getRunEvents",
    tags: ["runs"],
    summary: "Replay a run's events after an event id, then follow it live until it ends (server-sent events)",
    request: {
      params: RunIdParam,
      query: z.object({
        after: z
          .string()
          .regex(EVENT_ID, "after must be an event id (a non-negative integer)")
          .optional()
          .openapi({ description: "Replay the events after this id (Last-Event-ID takes precedence)", example: "3" }),
      }),
    },
    responses: {
      200: {
        description:
          "text/event-stream: the run's events after the given id (each with its `id:`), then live ones; it closes after the terminal event (`done` or `error`), which is always sent; a `: heartbeat` comment every 15 s",
        content: { "text/event-stream": { schema: { type: "string" } } },
      },
      ...commonProblems,
    },
  },
  { scope: "invoke" },
);

export function registerRunEvents(app: App) {
  app.openapi(route, async (c) => {
    const header = c.req.header("last-event-id");
    if (header !== undefined && !EVENT_ID.test(header.trim())) {
      throw new ApiError("validation_failed", "Last-Event-ID must be an event id (a non-negative integer)", {
        errors: [{ location: "header.last-event-id", message: "expected a non-negative integer" }],
      });
    }
    const after = Number(header?.trim() ?? c.req.valid("query").after ?? 0);
    const stream = await runEvents(runDeps(c), c.req.valid("param").runId, after);
    return new Response(stream, {
      status: 200,
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
    }) as never;
  });
}
