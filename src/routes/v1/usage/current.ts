import { createRoute } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { periodKeyOf } from "../../../lib/time";
import { getUsageReport } from "../../../services/metering/report";
import { bearerSecurity, problemResponses } from "../../openapi-shared";
import { UsageReportSchema } from "./schemas";

const route = createRoute({
  method: "get",
  path: "/v1/usage/current",
  tags: ["usage"],
  summary: "Your usage in the current UTC billing period, per agent, with your plan's limits and what remains",
  security: bearerSecurity,
  responses: {
    200: { description: "Usage so far this period", content: { "application/json": { schema: UsageReportSchema } } },
    ...problemResponses,
  },
});

export function registerCurrentUsage(app: App) {
  app.openapi(route, async (c) => {
    const ctx = { db: createDb(c.env.DB), userId: c.get("userId"), tierLimits: c.get("config").tierLimits };
    return c.json(await getUsageReport(ctx, periodKeyOf(Date.now())), 200);
  });
}
