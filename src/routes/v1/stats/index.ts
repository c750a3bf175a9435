// GET /v1/agents/{agentId}/stats: the agent's health over a window (services/stats/agent-stats.ts),
// from buckets the usage consumer pre-aggregates (services/stats/aggregate.ts).
import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { getAgentStats, STATS_WINDOWS, type StatsWindow } from "../../../services/stats/agent-stats";
import { AgentIdParam, commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";

const WINDOWS = Object.keys(STATS_WINDOWS) as [StatsWindow, ...StatsWindow[]];

const nullableMs = z.number().int().nullable();

const SummaryFields = {
  invocations: z.number().int().describe("Invocations (kind `invoke` or `preview`) the gateway measured"),
  errors: z.number().int(),
  errorRate: z.number().describe("errors / invocations (0 when there were none)"),
  errorsByCode: z.array(z.object({ code: z.string(), count: z.number().int() })).describe("Most frequent first"),
  durationMs: z
    .object({ mean: nullableMs, min: nullableMs, max: nullableMs, p50: nullableMs, p95: nullableMs, p99: nullableMs })
    .describe("The gateway's measured durations; percentiles from a log-scale histogram (within one bucket, ≤ ~41%)"),
  tokens: z
    .object({ input: z.number().int(), output: z.number().int() })
    .describe("Tokens the agent reported in verified telemetry"),
  modelTokens: z
    .object({ input: z.number().int(), output: z.number().int() })
    .describe("Tokens of platform model calls measured by the egress door"),
};

const StatsSummarySchema = z.object(SummaryFields).openapi("AgentStatsSummary");

const AgentStatsSchema = z
  .object({
    agentId: z.string(),
    window: z.enum(WINDOWS),
    bucketMs: z.number().int().describe("Width of the buckets the window is made of (60000 or 3600000)"),
    from: z.number().int().describe("Start of the oldest bucket read, ms since epoch"),
    to: z.number().int().describe("When the stats were read, ms since epoch"),
    totals: StatsSummarySchema,
    deployments: z.array(z.object({ deploymentId: z.string(), ...SummaryFields })).describe("Most invoked first"),
  })
  .openapi("AgentStats");

const route = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/stats",
    operationId: "getAgentStats",
    tags: ["agents"],
    summary: "The agent's health over a window: invocations, errors by code, durations, tokens, per deployment",
    request: {
      params: AgentIdParam,
      query: z.object({
        window: z
          .enum(WINDOWS, { error: `window must be one of ${WINDOWS.join(", ")}` })
          .default("24h")
          .openapi({
            param: { name: "window", in: "query" },
            description: "1h (minute buckets), 24h or 7d (hour buckets)",
          }),
      }),
    },
    responses: {
      200: { description: "Stats", content: { "application/json": { schema: z.object({ stats: AgentStatsSchema }) } } },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

export function registerStatsRoutes(app: App) {
  app.openapi(route, async (c) => {
    const { agentId } = c.req.valid("param");
    const { window } = c.req.valid("query");
    const stats = await getAgentStats({ db: c.var.services.db, userId: c.var.userId }, agentId, window);
    return c.json({ stats }, 200);
  });
}
