// Who is calling: the user, how they proved it, and what they may do. A user's own token (an OIDC
// JWT) may do everything; an API key only what its scopes allow, and only on its agents.

export const API_KEY_SCOPES = [
  "agents:read",
  "agents:write",
  "deploy",
  "invoke",
  "secrets:write",
  "usage:read",
] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** What a route requires: a scope an API key must hold, or `"jwt"` (only the user's own token). */
export type RouteScope = ApiKeyScope | "jwt";

export type Principal =
  | { userId: string; via: "jwt" }
  | {
      userId: string;
      via: "api_key";
      keyId: string;
      scopes: readonly ApiKeyScope[];
      /** Null: every agent of the user; otherwise only these (any other agent is "not found"). */
      agentIds: readonly string[] | null;
    };

/** The agents a principal is restricted to, or null for all of the user's agents. */
export function agentRestriction(principal: Principal): readonly string[] | null {
  return principal.via === "api_key" ? principal.agentIds : null;
}

export function mayUseAgent(principal: Principal, agentId: string): boolean {
  const only = agentRestriction(principal);
  return only === null || only.includes(agentId);
}

/** The idempotency scope of a principal: the user and the key (or "jwt"). */
export function principalKey(principal: Principal): string {
  return `${principal.userId}:${principal.via === "api_key" ? principal.keyId : "jwt"}`;
}
