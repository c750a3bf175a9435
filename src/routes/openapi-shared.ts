// Schemas shared by every route's OpenAPI description: the problem body and common responses.
import { z } from "@hono/zod-openapi";

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().openapi({ description: "Stable machine-readable error code" }),
    requestId: z.string(),
    errors: z.array(z.object({ location: z.string(), message: z.string() })).optional(),
  })
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
