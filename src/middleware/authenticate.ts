// Bearer-token authentication for /v1 routes: verifies the JWT and resolves the caller's user id.
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import { verifyAccessToken } from "../auth/jwt";
import { ApiError } from "../lib/errors";
import { ensureUser } from "../services/users/ensure-user";

export function authenticate(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header("authorization");
    if (!header) throw new ApiError("unauthenticated", "send `Authorization: Bearer <token>`");
    const match = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)$/i.exec(header.trim());
    if (!match?.[1]) throw new ApiError("unauthenticated", "the Authorization header must be `Bearer <token>`");
    const { config, db, waitUntil } = c.var.services;
    const { subject } = await verifyAccessToken(match[1], config.auth, { waitUntil });
    c.set("userId", await ensureUser({ db, subject, waitUntil }));
    await next();
  };
}
