import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { ApiError } from "../../../lib/errors";
import { isIdOf } from "../../../lib/ids";
import { cursorParam, limitParam } from "../../../lib/pagination";
import { followAgentLogs, listAgentLogs } from "../../../services/logs/logs";
import {
  DEFAULT_LOG_PAGE,
  LOG_LEVELS,
  type LogFilter,
  MAX_LOG_PAGE,
  MAX_LOG_QUERY_CHARS,
} from "../../../services/logs/types";
import { AgentIdParam, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";

const LINE_ID = /^(0|[1-9][0-9]{0,15})$/;

const LogLineSchema = z
  .object({
    id: z.number().int().openapi({ description: "The line's place in the agent's log (increasing); the SSE `id:`" }),
    ts: z
      .string()
      .openapi({ description: "When the agent printed it (ISO 8601)", example: "2026-12-01T15:00:00.000Z" }),
    level: z.enum(LOG_LEVELS),
    message: z.string().openapi({ description: "At most 4 KB; the agent's secret values replaced by [redacted]" }),
    deploymentId: z.string(),
    requestId: z.string().nullable().openapi({ description: "The invocation's request id (x-request-id)" }),
    runId: z.string().optional().openapi({ description: "The run, when the invocation was one" }),
  })
  .openapi("LogLine");

/** `since`: an ISO 8601 time or milliseconds since the epoch. */
const sinceParam = z
  .string()
  .max(40)
  .optional()
  .transform((v, ctx) => {
    if (v === undefined) return undefined;
    const ms = /^\d{1,15}$/.test(v) ? Number(v) : /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : Number.NaN;
    if (!Number.isFinite(ms)) {
      ctx.addIssue({ code: "custom", message: "since must be an ISO 8601 time or milliseconds since the epoch" });
      return z.NEVER;
    }
    return ms;
  })
  .openapi({
    param: { name: "since", in: "query" },
    type: "string",
    description: "Only lines at or after this time: ISO 8601 or ms since the epoch",
    example: "2026-12-01T15:00:00Z",
  });

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/logs",
    operationId: "listAgentLogs",
    tags: ["logs"],
    summary:
      "An agent's log lines (console.*, uncaught exceptions, failed outcomes), newest first; or follow them live",
    request: {
      params: AgentIdParam,
      query: z.object({
        since: sinceParam,
        deploymentId: z
          .string()
          .max(64)
          .refine((v) => isIdOf("deployment", v), "deploymentId must be a deployment id (dep_…)")
          .optional()
          .openapi({ param: { name: "deploymentId", in: "query" } }),
        level: z
          .enum(LOG_LEVELS, { message: `level must be one of ${LOG_LEVELS.join(", ")}` })
          .optional()
          .openapi({
            param: { name: "level", in: "query" },
            description: "Only lines at least this severe (debug < info = log < warn < error)",
          }),
        q: z
          .string()
          .max(MAX_LOG_QUERY_CHARS, `q must be at most ${MAX_LOG_QUERY_CHARS} characters`)
          .optional()
          .openapi({
            param: { name: "q", in: "query" },
            description: "Only lines containing this text (case-insensitive)",
          }),
        limit: limitParam(z, DEFAULT_LOG_PAGE, MAX_LOG_PAGE),
        cursor: cursorParam(z),
        follow: z
          .enum(["1", "true", "0", "false"], { message: "follow must be 1 or 0" })
          .optional()
          .openapi({
            param: { name: "follow", in: "query" },
            description: "1: answer a text/event-stream that follows new lines and never ends on its own",
          }),
        after: z
          .string()
          .regex(LINE_ID, "after must be a line id (a non-negative integer)")
          .optional()
          .openapi({
            param: { name: "after", in: "query" },
            description: "With follow: replay the lines after this id first (Last-Event-ID takes precedence)",
          }),
      }),
    },
    responses: {
      200: {
        description:
          '`{ logs, nextCursor }`, newest first; pass `nextCursor` as `cursor` for older lines. With `follow=1`, text/event-stream: `id: <id>` / `event: log` / `data: <LogLine>` for each line, `event: sampled` / `data: {"dropped": n}` when lines above the tier\'s rate were not sent, a `: heartbeat` comment every 15 s',
        content: {
          "application/json": {
            schema: z.object({ logs: z.array(LogLineSchema), nextCursor: z.string().nullable() }),
          },
          "text/event-stream": { schema: { type: "string" } },
        },
      },
      ...commonProblems,
      429: problemDoc("follow=1 while the agent already has 20 live followers (rate_limited; Retry-After)"),
    },
  },
  { scope: "agents:read" },
);

export function registerListAgentLogs(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const query = c.req.valid("query");
    const { db, tierLimits, logs, waitUntil } = c.var.services;
    const deps = { db, userId: c.var.userId, tierLimits, logs, waitUntil };
    const filter: LogFilter = { since: query.since, deploymentId: query.deploymentId, level: query.level, q: query.q };
    if (query.follow === "1" || query.follow === "true") {
      const header = c.req.header("last-event-id");
      if (header !== undefined && !LINE_ID.test(header.trim())) {
        throw new ApiError("validation_failed", "Last-Event-ID must be a line id (a non-negative integer)", {
          errors: [{ location: "header.last-event-id", message: "expected a non-negative integer" }],
        });
      }
      const raw = header?.trim() ?? query.after;
      const stream = await followAgentLogs(deps, agentId, filter, raw === undefined ? undefined : Number(raw));
      return new Response(stream, {
        status: 200,
        headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
      }) as never;
    }
    const page = await listAgentLogs(deps, agentId, filter, { limit: query.limit, cursor: query.cursor });
    return c.json(page, 200);
  });
}
