// Creating, reading and ending sessions (the /v1/agents/:agentId/sessions routes). A session
// belongs to the user and the agent it was made for: its Durable Object is named by both, so
// another tenant (or another agent) using the same session id reaches a different object, and an
// unknown session is the same 404 as another user's.
import { ApiError } from "../../lib/errors";
import { newId } from "../../lib/ids";
import { getAgent } from "../agents/agents";
import { agentRoute } from "../invoke/route-cache";
import type { TenantDeps } from "../tenant";
import type { TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import type { SessionKeepers, SessionView } from "./types";

export type SessionDeps = TenantDeps & {
  sessions: SessionKeepers;
  tierLimits: TierLimitsByTier;
  waitUntil: (promise: Promise<unknown>) => void;
};

export function sessionNotFound(sessionId: string): ApiError {
  return new ApiError("not_found", `session ${sessionId.slice(0, 200)} not found`);
}

/** A new session (`ses_…`), pinned now to the agent's active deployment. */
export async function createSession(deps: SessionDeps, agentId: string): Promise<SessionView> {
  await getAgent(deps, agentId);
  const route = await agentRoute(deps.db, { userId: deps.userId, agentId }, { waitUntil: deps.waitUntil });
  if (route.kind === "disabled") throw new ApiError("agent_disabled", `agent ${agentId} is disabled`);
  if (route.kind !== "deployment") {
    throw new ApiError("no_active_deployment", `agent ${agentId} has no active deployment; deploy it first`);
  }
  const { limits } = await limitsForUser(deps.db, deps.userId, deps.tierLimits, { waitUntil: deps.waitUntil });
  const key = { userId: deps.userId, agentId, sessionId: newId("session") };
  const created = await deps.sessions(key).create(key, route.deployment.id, limits.sessionIdleSeconds * 1000);
  // A fresh random id cannot exist already; should it, the caller may simply try again.
  if (!created) throw new ApiError("service_unavailable", "the session could not be created; try again");
  return created;
}

export async function getSession(deps: SessionDeps, agentId: string, sessionId: string): Promise<SessionView> {
  await getAgent(deps, agentId);
  const key = { userId: deps.userId, agentId, sessionId };
  const session = await deps.sessions(key).get(key);
  if (!session) throw sessionNotFound(sessionId);
  return session;
}

export async function endSession(deps: SessionDeps, agentId: string, sessionId: string): Promise<void> {
  await getAgent(deps, agentId);
  const key = { userId: deps.userId, agentId, sessionId };
  if (!(await deps.sessions(key).end(key))) throw sessionNotFound(sessionId);
}
