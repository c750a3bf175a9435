// The app factory: every router is an OpenAPIHono built here, so validation failures and errors
// look the same everywhere. Also the middleware order and the OpenAPI document + docs page.
import { OpenAPIHono, type z } from "@hono/zod-openapi";
import type { Context, Env as HonoEnv } from "hono";
import { HTTPException } from "hono/http-exception";
import type { Principal } from "./auth/principal";
import type { Services } from "./compose";
import { isDatabaseUnavailable } from "./db/unavailable";
import type { Config, Env } from "./env";
import { ConfigError } from "./lib/config-error";
import { ApiError, type FieldError, problemResponse } from "./lib/errors";
import { describeError, logError } from "./lib/logger";

export type AppVariables = {
  requestId: string;
  config: Config;
  /** The request's services, built once by the request-context middleware (compose.ts). */
  services: Services;
  userId: string;
  /** Who is calling and how (set by authenticate): a JWT, or an API key with its scopes and agents. */
  principal: Principal;
};

export type AppEnv = { Bindings: Env; Variables: AppVariables } & HonoEnv;
export type App = OpenAPIHono<AppEnv>;
export type AppContext = Context<AppEnv>;

type ZodIssue = z.core.$ZodIssue;

/** Zod issues as `errors: [{ location: "body.name", message }]`: the first problem of each bad field. */
export function fieldErrors(target: string, issues: readonly ZodIssue[]): FieldError[] {
  const byLocation = new Map<string, string>();
  for (const issue of issues) {
    const base = [target, ...issue.path.map(String)].join(".");
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys)
        if (!byLocation.has(`${base}.${key}`)) byLocation.set(`${base}.${key}`, "unknown field");
    } else if (!byLocation.has(base)) {
      byLocation.set(base, issue.message);
    }
  }
  return [...byLocation].map(([location, message]) => ({ location, message }));
}

const TARGET_NAMES: Record<string, string> = { json: "body", query: "query", param: "path", header: "header" };

export function newApp(): App {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const target = TARGET_NAMES[result.target] ?? result.target;
        const errors = fieldErrors(target, result.error.issues);
        throw new ApiError("validation_failed", `${errors.length} field(s) failed validation`, { errors });
      }
    },
  });
}

/** The one error handler: own error -> HTTPException -> unknown (logged, 500 without internals). */
export function handleError(err: unknown, c: AppContext): Response {
  const requestId = c.get("requestId") ?? "req_unknown";
  return problemResponse(toApiError(err, requestId, c.req.routePath), requestId);
}

export function toApiError(err: unknown, requestId: string, route?: string): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ConfigError) {
    logError("configuration_error", { requestId, error: err.message });
    return new ApiError("configuration_error", "the service is misconfigured; the operator has been told");
  }
  if (err instanceof HTTPException) {
    if (err.status === 400 && /malformed json/i.test(err.message)) {
      return new ApiError("malformed_json", "the request body is not valid JSON");
    }
    if (err.status === 413) return new ApiError("payload_too_large", "the request body is too large");
    if (err.status === 401) return new ApiError("unauthenticated", "authentication required");
    return new ApiError("bad_request", err.message || "bad request");
  }
  if (isDatabaseUnavailable(err)) {
    logError("database_unavailable", { requestId, route, error: describeError(err) });
    return new ApiError("service_unavailable", "the database is temporarily unavailable; retry shortly", {
      headers: { "retry-after": "2" },
    });
  }
  logError("unhandled_error", { requestId, route, error: describeError(err) });
  return new ApiError("internal_error", "an unexpected error occurred; quote the requestId when reporting it");
}
