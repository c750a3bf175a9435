// Rollout request and response schemas (one source for validation and the OpenAPI document).
import { z } from "@hono/zod-openapi";
import { ROLLOUT_STATUSES, type RolloutRow } from "../../../db/schema";

/** Bounds: a stage lasts at least a minute (the evaluator runs every minute) and at most a week. */
export const MIN_STAGE_SECONDS = 60;
export const MAX_STAGE_SECONDS = 7 * 24 * 3600;
export const MAX_STAGES = 10;

const StageSchema = z
  .strictObject({
    percent: z.number().int("percent must be a whole number").min(1).max(100).openapi({
      description: "Share of the agent's traffic (by session) the candidate serves in this stage, 1–100",
      example: 10,
    }),
    minDurationSeconds: z
      .number()
      .int()
      .min(MIN_STAGE_SECONDS)
      .max(MAX_STAGE_SECONDS)
      .openapi({
        description: `How long the stage lasts at least, ${MIN_STAGE_SECONDS}–${MAX_STAGE_SECONDS} s; it advances at the first evaluation (every minute) after that without a breach`,
        example: 300,
      }),
  })
  .openapi("RolloutStage");

const AbortOnSchema = z
  .strictObject({
    maxErrorRatePct: z.number().min(0).max(100).optional().openapi({
      description: "Abort when more than this percentage of the candidate's requests in the stage failed",
      example: 5,
    }),
    maxP95Ms: z.number().int().min(1).max(600_000).optional().openapi({
      description: "Abort when the candidate's p95 duration in the stage exceeds this many ms",
      example: 2000,
    }),
    minRequests: z.number().int().min(1).max(1_000_000).openapi({
      description: "Judge the candidate only once it served at least this many requests in the stage",
      example: 20,
    }),
  })
  .refine((v) => v.maxErrorRatePct !== undefined || v.maxP95Ms !== undefined, {
    message: "abortOn needs maxErrorRatePct or maxP95Ms (or both)",
  })
  .openapi("RolloutAbortOn");

export const CreateRolloutBody = z
  .strictObject({
    deploymentId: z.string().max(64).openapi({
      description: "The candidate: a `ready` or `inactive` deployment of this agent whose code is still in the runtime",
      example: "dep_01jd0000000000000000000000",
    }),
    stages: z
      .array(StageSchema)
      .min(1)
      .max(MAX_STAGES)
      .superRefine((stages, ctx) => {
        for (let i = 1; i < stages.length; i++) {
          const prev = stages[i - 1];
          const cur = stages[i];
          if (prev && cur && cur.percent <= prev.percent) {
            ctx.addIssue({
              code: "custom",
              path: [i, "percent"],
              message: "each stage's percent must be greater than the previous stage's",
            });
          }
        }
      })
      .openapi({ description: `1–${MAX_STAGES} stages, percent strictly increasing` }),
    abortOn: AbortOnSchema,
  })
  .openapi("CreateRolloutRequest");

const MeasurementSchema = z.object({
  requests: z.number().int(),
  errors: z.number().int(),
  errorRatePct: z.number().nullable(),
  p95Ms: z.number().nullable(),
});

const EvaluationSchema = z
  .object({
    at: z.number().int().openapi({ description: "ms since epoch" }),
    stageIndex: z.number().int(),
    windowStart: z.number().int(),
    candidate: MeasurementSchema,
    baseline: MeasurementSchema,
    decision: z.enum(["abort", "advance", "complete", "wait"]),
  })
  .openapi("RolloutEvaluation");

export const RolloutSchema = z
  .object({
    id: z.string(),
    agentId: z.string(),
    candidateDeploymentId: z.string(),
    baselineDeploymentId: z.string(),
    status: z.enum(ROLLOUT_STATUSES).openapi({
      description: "`running`; `completed` (the candidate is active); `aborted` (all traffic back on the baseline)",
    }),
    stages: z.array(StageSchema),
    abortOn: AbortOnSchema,
    stageIndex: z.number().int().openapi({ description: "0-based index of the current (or last) stage" }),
    currentPercent: z.number().int().nullable().openapi({
      description: "Share of traffic the candidate serves now; null once the rollout has ended",
    }),
    stageStartedAt: z
      .number()
      .int()
      .openapi({ description: "ms since epoch; the stage's measurement window starts here" }),
    endReason: z.string().nullable().openapi({ description: "Why it ended: the breach, `aborted by the user`, …" }),
    endedAt: z.number().int().nullable(),
    lastEvaluation: EvaluationSchema.nullable().openapi({
      description: "The evaluator's last measurements of the candidate and the baseline in the stage window",
    }),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .openapi("Rollout");

export type RolloutResponse = z.infer<typeof RolloutSchema>;

export function toRolloutResponse(row: RolloutRow): RolloutResponse {
  return {
    id: row.id,
    agentId: row.agentId,
    candidateDeploymentId: row.candidateDeploymentId,
    baselineDeploymentId: row.baselineDeploymentId,
    status: row.status,
    stages: row.stages,
    abortOn: row.abortOn,
    stageIndex: row.stageIndex,
    currentPercent: row.status === "running" ? (row.stages[row.stageIndex]?.percent ?? null) : null,
    stageStartedAt: row.stageStartedAt,
    endReason: row.endReason,
    endedAt: row.endedAt,
    lastEvaluation: (row.lastEvaluation as RolloutResponse["lastEvaluation"]) ?? null,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export const RolloutEnvelope = z.object({ rollout: RolloutSchema });

export const RolloutParams = z.object({
  agentId: z
    .string()
    .max(64)
    .openapi({ param: { name: "agentId", in: "path" }, example: "agt_01jd0000000000000000000000" }),
  rolloutId: z
    .string()
    .max(64)
    .openapi({ param: { name: "rolloutId", in: "path" }, example: "rol_01jd0000000000000000000000" }),
});
