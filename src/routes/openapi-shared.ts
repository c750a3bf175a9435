// Schemas shared by every route's OpenAPI description: the problem body and common responses.
import { z } from "@hono/zod-openapi";
import { PROBLEMS, type ProblemCode } from "../lib/errors";

const PROBLEM_CODES = Object.keys(PROBLEMS) as [ProblemCode, ...ProblemCode[]];

/**
 * RFC 9457 problem details. `code` is the closed set of stable codes (src/lib/errors.ts); the
 * extensions some answers carry are declared, and the object stays open for new ones.
 */
export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(PROBLEM_CODES).openapi({ description: "Stable machine-readable error code" }),
    requestId: z.string(),
    errors: z
      .array(z.object({ location: z.string(), message: z.string() }))
      .optional()
      .openapi({ description: "validation_failed, telemetry_rejected: each bad field and why" }),
    limitBytes: z.number().int().optional().openapi({ description: "payload_too_large: the limit that was exceeded" }),
    limit: z.string().optional().openapi({ description: "plan and usage limits: which tier limit was reached" }),
    tier: z.string().optional().openapi({ description: "plan and usage limits: the caller's tier" }),
    max: z.number().optional().openapi({ description: "plan and usage limits: the limit's value" }),
    periodKey: z.string().optional().openapi({ description: "usage_limit_exceeded: the billing period (YYYY-MM)" }),
    check: z.string().optional().openapi({ description: "telemetry problems: the verification step that failed" }),
    agentStatus: z.number().int().optional().openapi({ description: "upstream_error: the status the agent answered" }),
    agentBody: z.string().optional().openapi({ description: "upstream_error: the first 2 KB of the agent's answer" }),
    deploymentId: z
      .string()
      .optional()
      .openapi({ description: "service_unavailable on deploy: the deployment marked failed" }),
    deploymentStatus: z.string().optional().openapi({ description: "deployment_not_activatable: its status" }),
    allowed: z
      .array(z.string())
      .optional()
      .openapi({ description: "unsupported_runtime_provider: the accepted values" }),
  })
  .catchall(z.unknown())
  .openapi("Problem");

const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: ProblemSchema } },
});

export const commonProblems = {
  400: problem("Invalid request"),
  401: problem("Missing or invalid credentials"),
  404: problem("Not found (or owned by someone else)"),
  500: problem("Unexpected error"),
  503: problem("The database or the identity provider's keys are temporarily unavailable (Retry-After)"),
} as const;

/** What every route that takes a JSON body can also answer. */
export const bodyProblems = {
  413: problem("Body too large (`limitBytes` names the limit)"),
  415: problem("Body is not application/json"),
} as const;

/** An error answer as the OpenAPI document describes it (the answer itself is lib/errors.ts). */
export const problemDoc = problem;

/** Path parameter for an agent id. Any string is accepted; an unknown id is a 404, not a 400. */
export const AgentIdParam = z.object({
  agentId: z
    .string()
    .max(64)
    .openapi({ param: { name: "agentId", in: "path" }, example: "agt_01jd0000000000000000000000" }),
});
