// Per-route policy, declared where the route is declared: who may call it and how large a body it
// takes. A user route authenticates first, so a caller without credentials is answered before
// anything reads its body; only then is the body checked against the route's limit.
import { createRoute, type RouteConfig } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import { authenticate } from "../middleware/authenticate";
import { type BodyLimit, bodyGuard, DEFAULT_BODY_LIMIT_BYTES } from "../middleware/body-guard";

export const bearerSecurity = [{ bearerAuth: [] }];

type Policy = {
  /** Largest accepted request body (default DEFAULT_BODY_LIMIT_BYTES), or the caller's own limit. */
  bodyLimit?: BodyLimit;
};

/** A route called by a signed-in user (`Authorization: Bearer …`); every operation is named. */
export function userRoute<const R extends Omit<RouteConfig, "security" | "middleware"> & { operationId: string }>(
  route: R,
  policy: Policy = {},
) {
  const middleware: MiddlewareHandler<AppEnv>[] = [
    authenticate(),
    bodyGuard(policy.bodyLimit ?? DEFAULT_BODY_LIMIT_BYTES),
  ];
  return createRoute({ ...route, security: bearerSecurity, middleware });
}
