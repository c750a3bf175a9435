import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { limitParam } from "../../../lib/pagination";
import { listRecentEvents, type MetricsEventRow } from "../../../services/metering/recent-events";
import { bearerSecurity, problemResponses } from "../../openapi-shared";

const MetricsEventSchema = z
  .object({
    id: z.string(),
    agentId: z.string(),
    deploymentId: z.string(),
    source: z.enum(["gateway", "telemetry"]).openapi({
      description: "`gateway`: the gateway's own measurement of an invocation; `telemetry`: reported by the agent",
    }),
    eventId: z.string().nullable(),
    traceId: z.string().nullable(),
    runtimeProvider: z.string(),
    kind: z.string(),
    ts: z.number().int().openapi({ description: "Event time, ms since epoch" }),
    durationMs: z.number().int().nullable(),
    status: z.string().nullable(),
    errorCode: z.string().nullable(),
    inputTokens: z.number().int().nullable(),
    outputTokens: z.number().int().nullable(),
    bytesIn: z.number().int().nullable(),
    bytesOut: z.number().int().nullable(),
    streaming: z.boolean().nullable(),
    receivedAt: z.number().int(),
  })
  .openapi("MetricsEvent");

function toMetricsEventResponse(row: MetricsEventRow): z.infer<typeof MetricsEventSchema> {
  return {
    id: row.id,
    agentId: row.agentId,
    deploymentId: row.deploymentId,
    source: row.source,
    eventId: row.eventId,
    traceId: row.traceId,
    runtimeProvider: row.runtimeProvider,
    kind: row.kind,
    ts: row.ts,
    durationMs: row.durationMs,
    status: row.status,
    errorCode: row.errorCode,
    inputTokens: row.inputTokens,
    outputTokens: row.outputTokens,
    bytesIn: row.bytesIn,
    bytesOut: row.bytesOut,
    streaming: row.streaming,
    receivedAt: row.receivedAt,
  };
}

const route = createRoute({
  method: "get",
  path: "/v1/metrics/recent",
  tags: ["metrics"],
  summary: "Recent metrics events of one of your agents, newest first",
  security: bearerSecurity,
  request: {
    query: z.object({
      agentId: z
        .string({ error: "agentId is required" })
        .min(1, "agentId is required")
        .max(64)
        .openapi({ param: { name: "agentId", in: "query" }, example: "agt_01jd0000000000000000000000" }),
      sinceMs: z
        .string()
        .regex(/^\d{1,16}$/, "sinceMs must be a non-negative integer (ms since epoch)")
        .transform(Number)
        .refine(Number.isSafeInteger, "sinceMs must be a non-negative integer (ms since epoch)")
        .optional()
        .openapi({
          param: { name: "sinceMs", in: "query" },
          type: "integer",
          minimum: 0,
          description: "Only events at or after this time (ms since epoch)",
        }),
      limit: limitParam(z, 50, 200),
    }),
  },
  responses: {
    200: {
      description: "Events",
      content: { "application/json": { schema: z.object({ events: z.array(MetricsEventSchema) }) } },
    },
    ...problemResponses,
  },
});

export function registerRecentMetrics(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, sinceMs, limit } = c.req.valid("query");
    const rows = await listRecentEvents(
      { db: createDb(c.env.DB), userId: c.get("userId") },
      { agentId, sinceMs, limit },
    );
    return c.json({ events: rows.map(toMetricsEventResponse) }, 200);
  });
}
