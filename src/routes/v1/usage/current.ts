import type { App } from "../../../app";
import { periodKeyOf } from "../../../lib/time";
import { getUsageReport } from "../../../services/metering/report";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { forPrincipal, UsageReportSchema } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/usage/current",
    operationId: "getCurrentUsage",
    tags: ["usage"],
    summary: "Your usage in the current UTC billing period, per agent, with your plan's limits and what remains",
    responses: {
      200: { description: "Usage so far this period", content: { "application/json": { schema: UsageReportSchema } } },
      ...commonProblems,
    },
  },
  { scope: "usage:read" },
);

export function registerCurrentUsage(app: App) {
  app.openapi(route, async (c) => {
    const deps = { db: c.var.services.db, userId: c.var.userId, tierLimits: c.var.services.tierLimits };
    return c.json(forPrincipal(await getUsageReport(deps, periodKeyOf(Date.now())), c.var.principal), 200);
  });
}
