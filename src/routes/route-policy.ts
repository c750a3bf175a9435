// Per-route policy, declared where the route is declared: who may call it (bearer credentials and
// the API-key scope it needs), how large a body it takes, and Idempotency-Key on POSTs. A user
// route authenticates first, so a caller without credentials is answered before anything reads
// its body; then the scope and the key's agents are checked; only then is the body checked
// against the route's limit, and (POST) the Idempotency-Key claimed.
import { createRoute, type RouteConfig } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import type { RouteScope } from "../auth/principal";
import { authenticate, authorize } from "../middleware/authenticate";
import { type BodyLimit, bodyGuard, DEFAULT_BODY_LIMIT_BYTES } from "../middleware/body-guard";
import { idempotency } from "../middleware/idempotency";
import { documentedResponses } from "./openapi-shared";

type Policy = {
  /** Largest accepted request body (default DEFAULT_BODY_LIMIT_BYTES), or the caller's own limit. */
  bodyLimit?: BodyLimit;
  /** The API-key scope the route needs, or `"jwt"`: only the user's own token. */
  scope: RouteScope;
  /**
   * POST only: whether Idempotency-Key applies (default true). False for an answer that must never
   * be stored, such as a new API key: the header is then ignored.
   */
  idempotent?: boolean;
};

/**
 * A route called by a signed-in user (`Authorization: Bearer …`: a JWT or an API key); every
 * operation is named. The document is completed here, from the policy, so no route can forget it:
 * the response headers every answer carries (openapi-shared.ts `documentedResponses`) and, on a
 * POST, the Idempotency-Key request header with the 409/422 it can cause.
 */
export function userRoute<const R extends Omit<RouteConfig, "security" | "middleware"> & { operationId: string }>(
  route: R,
  policy: Policy,
) {
  const middleware: MiddlewareHandler<AppEnv>[] = [
    authenticate(),
    authorize(policy.scope),
    bodyGuard(policy.bodyLimit ?? DEFAULT_BODY_LIMIT_BYTES),
  ];
  const idempotent = route.method === "post" && policy.idempotent !== false;
  if (idempotent) middleware.push(idempotency());
  return createRoute({
    ...route,
    ...(idempotent ? { parameters: [{ $ref: "#/components/parameters/IdempotencyKey" }] } : {}),
    // Headers do not change what the handler may return, so the route keeps its own response types.
    responses: documentedResponses(route.responses, { idempotent }) as R["responses"],
    security: [{ bearerAuth: [policy.scope] }],
    middleware,
  });
}
