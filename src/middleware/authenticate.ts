// Bearer authentication for /v1 routes: a user's OIDC JWT or an API key (`whk_…`) becomes the
// request's principal; then the route's declared scope and the key's agent restriction are checked.
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import { looksLikeApiKey } from "../auth/api-key-format";
import { verifyAccessToken } from "../auth/jwt";
import { mayUseAgent, type RouteScope } from "../auth/principal";
import { ApiError } from "../lib/errors";
import { agentNotFound } from "../services/agents/agents";
import { verifyApiKey } from "../services/api-keys/verify";
import { ensureUser } from "../services/users/ensure-user";

export function authenticate(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header("authorization");
    if (!header) throw new ApiError("unauthenticated", "send `Authorization: Bearer <token>`");
    const match = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)$/i.exec(header.trim());
    if (!match?.[1]) throw new ApiError("unauthenticated", "the Authorization header must be `Bearer <token>`");
    const token = match[1];
    const { db, config, waitUntil } = c.var.services;
    if (looksLikeApiKey(token)) {
      const principal = await verifyApiKey({ db, waitUntil }, token);
      c.set("principal", principal);
      c.set("userId", principal.userId);
    } else {
      const { subject } = await verifyAccessToken(token, config.auth, { waitUntil });
      const userId = await ensureUser({ db, subject, waitUntil });
      c.set("principal", { userId, via: "jwt" });
      c.set("userId", userId);
    }
    await next();
  };
}

/**
 * The route's declared scope, and the key's agents. A user's JWT may do everything. An API key
 * needs the route's scope (403 insufficient_scope naming it); a route that takes only a JWT
 * answers a key 403 user_token_required. A key restricted to some agents gets 404 for any other
 * agent named by the route's `agentId` (path or query), exactly as for another user's agent: the
 * agent is checked here, once, before the body is read or any service runs. List routes that
 * span agents filter by the restriction themselves (GET /v1/agents).
 */
export function authorize(scope: RouteScope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = c.var.principal;
    if (principal.via === "api_key") {
      if (scope === "jwt") {
        throw new ApiError("user_token_required", "this route takes your own sign-in token, not an API key", {
          extra: { scope },
        });
      }
      if (!principal.scopes.includes(scope)) {
        throw new ApiError("insufficient_scope", `this API key lacks the scope \`${scope}\``, { extra: { scope } });
      }
      const agentId = c.req.param("agentId") ?? c.req.query("agentId");
      if (agentId !== undefined && !mayUseAgent(principal, agentId)) throw agentNotFound(agentId);
    }
    await next();
  };
}
