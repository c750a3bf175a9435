import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { periodKeyOf } from "../../../lib/time";
import { getUsageReport } from "../../../services/metering/report";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { forPrincipal, UsageReportSchema } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/usage",
    operationId: "getUsageForPeriod",
    tags: ["usage"],
    summary: "Your usage in a given UTC billing period (YYYY-MM), per agent",
    request: {
      query: z.object({
        period: z
          .string()
          .regex(/^\d{4}-(0[1-9]|1[0-2])$/, "period must be YYYY-MM")
          .refine((p) => p <= periodKeyOf(Date.now()), "period must not be in the future")
          .openapi({
            param: { name: "period", in: "query" },
            description: "A UTC billing period, YYYY-MM, not after the current one",
            example: "2026-10",
          }),
      }),
    },
    responses: {
      200: { description: "Usage in that period", content: { "application/json": { schema: UsageReportSchema } } },
      ...commonProblems,
    },
  },
  { scope: "usage:read" },
);

export function registerPeriodUsage(app: App) {
  app.openapi(route, async (c) => {
    const { period } = c.req.valid("query");
    const deps = { db: c.var.services.db, userId: c.var.userId, tierLimits: c.var.services.tierLimits };
    return c.json(forPrincipal(await getUsageReport(deps, period), c.var.principal), 200);
  });
}
