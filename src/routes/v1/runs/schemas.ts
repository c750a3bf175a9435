// Runs: schemas for the OpenAPI document and the answers (docs/api.md, "Runs").
import { z } from "@hono/zod-openapi";
import type { AppContext } from "../../../app";
import { mayUseAgent } from "../../../auth/principal";
import type { RunDeps } from "../../../services/runs/runs";

export const RunSchema = z
  .object({
    id: z.string().openapi({ example: "run_01jd0000000000000000000000" }),
    agentId: z.string(),
    deploymentId: z.string(),
    status: z.enum(["running", "succeeded", "failed", "cancelled", "timed_out"]),
    createdAt: z.number().int().openapi({ description: "ms since epoch" }),
    startedAt: z.number().int().openapi({ description: "ms since epoch: when the agent was called" }),
    endedAt: z.number().int().nullable().openapi({ description: "ms since epoch; null while running" }),
    errorCode: z
      .string()
      .optional()
      .openapi({ description: "how a run that did not succeed ended: the code of its terminal `error` event" }),
  })
  .openapi("Run");

export const RunEnvelope = z.object({ run: RunSchema }).openapi("RunEnvelope");

export const RunIdParam = z.object({
  runId: z
    .string()
    .max(64)
    .openapi({ param: { name: "runId", in: "path" }, example: "run_01jd0000000000000000000000" }),
});

export function runDeps(c: AppContext): RunDeps {
  const principal = c.var.principal;
  return {
    runs: c.var.services.runs,
    userId: c.var.userId,
    mayUseAgent: (agentId) => mayUseAgent(principal, agentId),
  };
}
