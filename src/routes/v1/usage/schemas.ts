// The usage report shape shared by GET /v1/usage/current and GET /v1/usage.
import { z } from "@hono/zod-openapi";
import { agentRestriction, type Principal } from "../../../auth/principal";
import { TIERS } from "../../../db/schema";
import { TIER_LIMIT_KEYS } from "../../../services/usage/tiers";

const UsageTotalsSchema = z
  .object({
    requests: z.number().int().openapi({ description: "Invocations measured by the gateway (success or error)" }),
    errors: z.number().int().openapi({ description: "Invocations that ended in an error" }),
    durationMsTotal: z.number().int(),
    bytesIn: z.number().int(),
    bytesOut: z.number().int(),
    inputTokens: z.number().int().openapi({ description: "From verified telemetry" }),
    outputTokens: z.number().int().openapi({ description: "From verified telemetry" }),
    modelInputTokens: z
      .number()
      .int()
      .openapi({ description: "Measured by the egress door on platform model calls (models.webhost.internal)" }),
    modelOutputTokens: z
      .number()
      .int()
      .openapi({ description: "Measured by the egress door on platform model calls (models.webhost.internal)" }),
    egressRequests: z.number().int().openapi({ description: "Outbound requests of the agents (allowed or refused)" }),
  })
  .openapi("UsageTotals");

export const UsageReportSchema = z
  .object({
    periodKey: z.string().openapi({ description: "UTC billing period, YYYY-MM", example: "2026-11" }),
    tier: z.enum(TIERS).openapi({ description: "Your plan now; `free` without an active subscription" }),
    usage: UsageTotalsSchema,
    limits: z.object(Object.fromEntries(TIER_LIMIT_KEYS.map((k) => [k, z.number().int()]))),
    remaining: z.object({
      invocations: z.number().int(),
      agents: z.number().int().optional().openapi({ description: "Current period only" }),
      deploysToday: z.number().int().optional().openapi({ description: "Current period only" }),
    }),
    agents: z.array(
      z.object({
        agentId: z.string(),
        name: z.string().nullable().openapi({ description: "null once the agent is deleted" }),
        deleted: z.boolean(),
        usage: UsageTotalsSchema,
      }),
    ),
  })
  .openapi("UsageReport");

/**
 * A report as a principal may see it: the totals and limits are the account's (the plan is per
 * account), the per-agent lines only the agents an API key is restricted to.
 */
export function forPrincipal<R extends { agents: { agentId: string }[] }>(report: R, principal: Principal): R {
  const only = agentRestriction(principal);
  return only === null ? report : { ...report, agents: report.agents.filter((a) => only.includes(a.agentId)) };
}
