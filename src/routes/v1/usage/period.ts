import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { periodKeyOf } from "../../../lib/time";
import { getUsageReport } from "../../../services/metering/report";
import { bearerSecurity, problemResponses } from "../../openapi-shared";
import { UsageReportSchema } from "./schemas";

const route = createRoute({
  method: "get",
  path: "/v1/usage",
  tags: ["usage"],
  summary: "Your usage in a given UTC billing period (YYYY-MM), per agent",
  security: bearerSecurity,
  request: {
    query: z.object({
      period: z
        .string()
        .regex(/^\d{4}-(0[1-9]|1[0-2])$/, "period must be YYYY-MM")
        .refine((p) => p <= periodKeyOf(Date.now()), "period must not be in the future")
        .openapi({ param: { name: "period", in: "query" }, example: "2026-10" }),
    }),
  },
  responses: {
    200: { description: "Usage in that period", content: { "application/json": { schema: UsageReportSchema } } },
    ...problemResponses,
  },
});

export function registerPeriodUsage(app: App) {
  app.openapi(route, async (c) => {
    const { period } = c.req.valid("query");
    const ctx = { db: createDb(c.env.DB), userId: c.get("userId"), tierLimits: c.get("config").tierLimits };
    return c.json(await getUsageReport(ctx, period), 200);
  });
}
