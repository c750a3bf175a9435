import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { limitParam } from "../../../lib/pagination";
import { pickFields } from "../../../lib/pick-fields";
import { MetricsEventViewSchema } from "../../../services/metering/event";
import { listRecentEvents } from "../../../services/metering/recent-events";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";

// The event as a client sees it. Built here rather than in services/metering: only schemas made
// after @hono/zod-openapi has extended zod carry `.openapi()`, which names the document's component.
const MetricsEventSchema = z.object(MetricsEventViewSchema.shape).openapi("MetricsEvent");

const route = userRoute(
  {
    method: "get",
    path: "/v1/metrics/recent",
    operationId: "listRecentMetrics",
    tags: ["metrics"],
    summary: "Recent metrics events of one of your agents, newest first",
    request: {
      query: z.object({
        agentId: z
          .string({ error: "agentId is required" })
          .min(1, "agentId is required")
          .max(64)
          .openapi({ param: { name: "agentId", in: "query" }, example: "agt_01jd0000000000000000000000" }),
        sinceMs: z
          .string()
          .regex(/^\d+$/, "sinceMs must be a non-negative integer (ms since epoch)")
          .refine(
            (v) => v.length <= 16 && Number.isSafeInteger(Number(v)),
            `sinceMs must be at most ${Number.MAX_SAFE_INTEGER} (2^53 - 1)`,
          )
          .transform(Number)
          .optional()
          .openapi({
            param: { name: "sinceMs", in: "query" },
            type: "integer",
            minimum: 0,
            maximum: Number.MAX_SAFE_INTEGER,
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
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerRecentMetrics(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, sinceMs, limit } = c.req.valid("query");
    const rows = await listRecentEvents({ db: c.var.services.db, userId: c.var.userId }, { agentId, sinceMs, limit });
    return c.json({ events: rows.map((row) => pickFields(MetricsEventSchema, row)) }, 200);
  });
}
