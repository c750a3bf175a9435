// Schemas shared by every route's OpenAPI description: the problem body and common responses.
import { z } from "@hono/zod-openapi";
import { PROBLEMS, type ProblemCode } from "../lib/errors";
import { IDEMPOTENCY_KEY_MAX_CHARS } from "../services/idempotency/idempotency";

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

/**
 * Response headers, declared once under `components.headers` (registered by docs.ts) and
 * referenced from each response that sends them, so a generated client types them.
 */
export const RESPONSE_HEADERS = {
  RequestId: {
    description:
      "This request's id (`req_…`); problem bodies carry the same value as `requestId`. Quote it when reporting a problem.",
    required: true,
    schema: { type: "string", example: "req_01jd0000000000000000000000" },
  },
  DeploymentId: {
    description: "The deployment that answered (or was called, on an agent failure)",
    schema: { type: "string", example: "dep_01jd0000000000000000000000" },
  },
  Location: {
    description: "The new deployment's URL; poll it until `status` is `active` or `failed`",
    required: true,
    schema: {
      type: "string",
      example: "/v1/agents/agt_01jd0000000000000000000000/deployments/dep_01jd0000000000000000000000",
    },
  },
  RetryAfter: {
    description: "Seconds to wait before retrying",
    schema: { type: "string", pattern: "^[0-9]+$", example: "5" },
  },
  RateLimit: {
    description:
      'The period\'s invocation quota after this request (IETF RateLimit header fields draft): `"period";r=<remaining>;t=<seconds until the period resets>`',
    schema: { type: "string", example: '"period";r=99;t=86400' },
  },
  RateLimitPolicy: {
    description: 'The invocation quota: `"period";q=<invocations per period>;w=<period length in seconds>`',
    schema: { type: "string", example: '"period";q=100;w=2592000' },
  },
  RunId: {
    description:
      "The run this stream is (`run_…`): `GET /v1/runs/{runId}/events` resumes it after a dropped connection",
    schema: { type: "string", example: "run_01jd0000000000000000000000" },
  },
  IdempotentReplayed: {
    description:
      "`true` when this is the stored answer of an earlier request with the same Idempotency-Key and body (absent on a first answer)",
    schema: { type: "string", enum: ["true"] as string[] },
  },
} as const;

export type ResponseHeaderName = keyof typeof RESPONSE_HEADERS;

/** `{ "<Header-Name>": { $ref } }` for a response's `headers`. */
export function headers(...names: ResponseHeaderName[]): Record<string, { $ref: string }> {
  return Object.fromEntries(names.map((name) => [HEADER_NAMES[name], { $ref: `#/components/headers/${name}` }]));
}

const HEADER_NAMES: Record<ResponseHeaderName, string> = {
  RequestId: "x-request-id",
  DeploymentId: "x-deployment-id",
  Location: "Location",
  RetryAfter: "Retry-After",
  RateLimit: "RateLimit",
  RateLimitPolicy: "RateLimit-Policy",
  RunId: "x-run-id",
  IdempotentReplayed: "Idempotent-Replayed",
};

/** The `Idempotency-Key` request header every POST user route accepts (components.parameters). */
export const IDEMPOTENCY_KEY_PARAMETER = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description:
    "Makes a POST safe to retry: a repeat with the same key and body within 24 h replays the first final answer " +
    "(with `Idempotent-Replayed: true`) instead of running again; the same key with another body is 422 " +
    "`idempotency_key_reused`; a repeat while the first still runs is 409 `idempotency_in_progress` (Retry-After).",
  schema: { type: "string", minLength: 1, maxLength: IDEMPOTENCY_KEY_MAX_CHARS, pattern: "^[\\x21-\\x7e]+$" },
} as const;

type Responses = Record<string, object>;

/**
 * The headers every response of a route carries, added to the route's own: `x-request-id` on
 * all, `Retry-After` on 409/429/503 (when the server sends it), and, on a POST that takes an
 * Idempotency-Key, `Idempotent-Replayed` on every answer that can be replayed (2xx and 4xx
 * except 429) plus the 409 and 422 the key itself can cause.
 */
export function documentedResponses(responses: Responses, opts: { idempotent: boolean }): Responses {
  const all: Responses = { ...responses };
  if (opts.idempotent) {
    const conflict = all["409"] as { description?: string } | undefined;
    all["409"] = conflict
      ? { ...conflict, description: `${conflict.description}; or idempotency_in_progress (Retry-After)` }
      : problem("The first request with this Idempotency-Key is still running (idempotency_in_progress, Retry-After)");
    all["422"] ??= problem("This Idempotency-Key was used with a different body (idempotency_key_reused)");
  }
  const out: Responses = {};
  for (const [status, response] of Object.entries(all)) {
    if ("$ref" in response) {
      out[status] = response;
      continue;
    }
    const code = Number(status);
    const names: ResponseHeaderName[] = ["RequestId"];
    if (code === 429 || code === 503 || (code === 409 && opts.idempotent)) names.push("RetryAfter");
    if (opts.idempotent && ((code >= 200 && code < 300) || (code >= 400 && code < 500 && code !== 429)))
      names.push("IdempotentReplayed");
    const own = (response as { headers?: Record<string, unknown> }).headers;
    out[status] = { ...response, headers: { ...headers(...names), ...own } };
  }
  return out;
}
