// The closed set of problem codes the API answers with, each mapped to its HTTP status in one
// place. Bodies follow RFC 9457 (application/problem+json) plus `code` and `requestId`.
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export const PROBLEMS = {
  bad_request: { status: 400, title: "Bad request" },
  validation_failed: { status: 400, title: "Request validation failed" },
  malformed_json: { status: 400, title: "Malformed JSON body" },
  unsupported_media_type: { status: 415, title: "Unsupported media type" },
  invalid_cursor: { status: 400, title: "Invalid pagination cursor" },
  unsupported_runtime_provider: { status: 400, title: "Unsupported runtime provider" },
  invalid_rollout_candidate: { status: 400, title: "The deployment cannot be rolled out" },
  unauthenticated: { status: 401, title: "Authentication required" },
  invalid_token: { status: 401, title: "Invalid token" },
  invalid_api_key: { status: 401, title: "Invalid API key" },
  invalid_telemetry_signature: { status: 401, title: "Invalid telemetry signature" },
  telemetry_rejected: { status: 400, title: "Telemetry event rejected" },
  forbidden: { status: 403, title: "Forbidden" },
  insufficient_scope: { status: 403, title: "API key lacks a scope" },
  user_token_required: { status: 403, title: "A user token is required" },
  plan_limit_exceeded: { status: 403, title: "Plan limit exceeded" },
  egress_denied: { status: 403, title: "Outbound request refused by the agent's egress policy" },
  not_found: { status: 404, title: "Not found" },
  route_not_found: { status: 404, title: "Route not found" },
  method_not_allowed: { status: 405, title: "Method not allowed" },
  agent_name_taken: { status: 409, title: "Agent name already in use" },
  agent_disabled: { status: 409, title: "Agent is disabled" },
  no_active_deployment: { status: 409, title: "Agent has no active deployment" },
  deployment_not_activatable: { status: 409, title: "Deployment cannot be activated" },
  deployment_not_invocable: { status: 409, title: "Deployment cannot be invoked" },
  rollout_in_progress: { status: 409, title: "The agent already has a running rollout" },
  rollout_ended: { status: 409, title: "The rollout has already ended" },
  too_many_secrets: { status: 409, title: "Too many secrets" },
  too_many_webhooks: { status: 409, title: "Too many webhooks" },
  webhook_disabled: { status: 409, title: "Webhook is disabled" },
  conflict: { status: 409, title: "Conflicting concurrent change" },
  run_ended: { status: 409, title: "The run has already ended" },
  session_busy: { status: 409, title: "The session is running a turn" },
  session_deployment_gone: { status: 409, title: "The session's deployment can no longer run" },
  idempotency_in_progress: { status: 409, title: "A request with this Idempotency-Key is still running" },
  payload_too_large: { status: 413, title: "Payload too large" },
  idempotency_key_reused: { status: 422, title: "Idempotency-Key reused with a different body" },
  usage_limit_exceeded: { status: 429, title: "Usage limit exceeded" },
  rate_limited: { status: 429, title: "Too many requests" },
  token_budget_exceeded: { status: 429, title: "Model token budget exceeded" },
  egress_limit_exceeded: { status: 429, title: "Too many outbound requests in one invocation" },
  internal_error: { status: 500, title: "Internal server error" },
  configuration_error: { status: 500, title: "Server configuration error" },
  upstream_error: { status: 502, title: "Agent failed" },
  upstream_invalid_response: { status: 502, title: "Agent returned an invalid response" },
  upstream_exception: { status: 502, title: "Agent threw an exception" },
  upstream_not_found: { status: 502, title: "Agent script not found in the runtime" },
  upstream_limit_exceeded: { status: 502, title: "Agent exceeded a resource limit" },
  egress_failed: { status: 502, title: "Outbound request failed" },
  auth_unavailable: { status: 503, title: "Authentication keys unavailable" },
  service_unavailable: { status: 503, title: "Service temporarily unavailable" },
  upstream_unavailable: { status: 503, title: "The agent's runtime is busy" },
  upstream_timeout: { status: 504, title: "Agent timed out" },
  egress_timeout: { status: 504, title: "Outbound request timed out" },
} as const satisfies Record<string, { status: ContentfulStatusCode; title: string }>;

export type ProblemCode = keyof typeof PROBLEMS;

export type FieldError = { location: string; message: string };

export class ApiError extends HTTPException {
  readonly code: ProblemCode;
  readonly detail: string;
  readonly errors?: FieldError[];
  readonly headers?: Record<string, string>;
  readonly extra?: Record<string, unknown>;

  constructor(
    code: ProblemCode,
    detail: string,
    opts: {
      errors?: FieldError[];
      headers?: Record<string, string>;
      extra?: Record<string, unknown>;
      cause?: unknown;
    } = {},
  ) {
    super(PROBLEMS[code].status, { message: detail, cause: opts.cause });
    this.code = code;
    this.detail = detail;
    this.errors = opts.errors;
    this.headers = opts.headers;
    this.extra = opts.extra;
  }
}

export type ProblemBody = {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  requestId: string;
  errors?: FieldError[];
  [extra: string]: unknown;
};

export function problemBody(err: ApiError, requestId: string): ProblemBody {
  const { status, title } = PROBLEMS[err.code];
  return {
    ...err.extra,
    type: `https://webhost.systems/problems/${err.code.replaceAll("_", "-")}`,
    title,
    status,
    detail: err.detail,
    code: err.code,
    requestId,
    ...(err.errors ? { errors: err.errors } : {}),
  };
}

export function problemResponse(err: ApiError, requestId: string): Response {
  const headers = new Headers(err.headers);
  headers.set("content-type", "application/problem+json");
  headers.set("x-request-id", requestId);
  return new Response(JSON.stringify(problemBody(err, requestId)), {
    status: PROBLEMS[err.code].status,
    headers,
  });
}
