import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { TIERS } from "../../../db/schema";
import { getCurrentUsage } from "../../../services/usage/current";
import { bearerSecurity, problemResponses } from "../../openapi-shared";

const UsageSchema = z
  .object({
    periodKey: z.string().openapi({ description: "UTC billing period, YYYY-MM", example: "2026-11" }),
    tier: z.enum(TIERS).openapi({ description: "Your plan; `free` without an active subscription" }),
    usage: z.object({
      requests: z.number().int().openapi({ description: "Invocations measured by the gateway" }),
      errors: z.number().int().openapi({ description: "Invocations that ended in an error" }),
      durationMsTotal: z.number().int(),
      bytesIn: z.number().int(),
      bytesOut: z.number().int(),
      inputTokens: z.number().int().openapi({ description: "From verified telemetry" }),
      outputTokens: z.number().int().openapi({ description: "From verified telemetry" }),
    }),
  })
  .openapi("CurrentUsage");

const route = createRoute({
  method: "get",
  path: "/v1/usage/current",
  tags: ["usage"],
  summary: "Your usage in the current UTC billing period",
  security: bearerSecurity,
  responses: {
    200: { description: "Usage so far this period", content: { "application/json": { schema: UsageSchema } } },
    ...problemResponses,
  },
});

export function registerCurrentUsage(app: App) {
  app.openapi(route, async (c) => {
    const usage = await getCurrentUsage({ db: createDb(c.env.DB), userId: c.get("userId") });
    return c.json(usage, 200);
  });
}
