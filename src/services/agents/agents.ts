// Agent lifecycle. Every query is scoped by the caller's user id; another user's agent and a
// deleted agent are both simply "not found".
import { and, count, desc, eq, inArray, isNull, lt, sql } from "drizzle-orm";
import { type AgentRow, agents } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { isIdOf, newId } from "../../lib/ids";
import { forgetAgentRoute } from "../invoke/route-cache";
import type { TenantDeps } from "../tenant";
import { planLimitExceeded } from "../usage/plan-limits";
import type { Tier } from "../usage/tiers";

export type { AgentRow };

export function agentNotFound(agentId: string): ApiError {
  return new ApiError("not_found", `agent ${agentId} not found`);
}

function isUniqueViolation(err: unknown): boolean {
  const text = err instanceof Error ? `${err.message} ${err.cause instanceof Error ? err.cause.message : ""}` : "";
  return /UNIQUE constraint failed/i.test(text);
}

function nameTaken(name: string): ApiError {
  return new ApiError("agent_name_taken", `you already have an agent named "${name}"`, {
    errors: [{ location: "body.name", message: "already in use" }],
  });
}

export async function getAgent({ db, userId }: TenantDeps, agentId: string): Promise<AgentRow> {
  if (!isIdOf("agent", agentId)) throw agentNotFound(agentId);
  const row = await db.query.agents.findFirst({
    where: and(eq(agents.id, agentId), eq(agents.userId, userId), isNull(agents.deletedAt)),
  });
  if (!row) throw agentNotFound(agentId);
  return row;
}

export async function listAgents(
  { db, userId }: TenantDeps,
  input: {
    limit: number;
    afterId?: string;
    /** Only these agents (an API key restricted to them); omitted or null: all of the user's. */
    onlyIds?: readonly string[] | null;
  },
): Promise<{ rows: AgentRow[]; hasMore: boolean }> {
  const rows = await db
    .select()
    .from(agents)
    .where(
      and(
        eq(agents.userId, userId),
        isNull(agents.deletedAt),
        input.afterId ? lt(agents.id, input.afterId) : undefined,
        input.onlyIds ? inArray(agents.id, [...input.onlyIds]) : undefined,
      ),
    )
    .orderBy(desc(agents.id))
    .limit(input.limit + 1);
  return { rows: rows.slice(0, input.limit), hasMore: rows.length > input.limit };
}

/**
 * Creates an agent unless the user already has `plan.maxAgents` live agents (403
 * plan_limit_exceeded). The count and the insert are one statement, so concurrent creates can
 * never overshoot the limit: D1 runs each statement alone against the database.
 */
export async function createAgent(
  { db, userId }: TenantDeps,
  input: { name: string; description?: string | null },
  plan: { tier: Tier; maxAgents: number },
): Promise<AgentRow> {
  const now = Date.now();
  const row: AgentRow = {
    id: newId("agent", now),
    userId,
    name: input.name,
    description: input.description ?? null,
    status: "active",
    activeDeploymentId: null,
    createdAt: now,
    updatedAt: now,
    deletedAt: null,
    purgedAt: null,
  };
  let inserted: number;
  try {
    const result = await db.run(sql`
      INSERT INTO agents (id, user_id, name, description, status, active_deployment_id, created_at, updated_at, deleted_at)
      SELECT ${row.id}, ${userId}, ${row.name}, ${row.description}, 'active', NULL, ${now}, ${now}, NULL
      WHERE (SELECT COUNT(*) FROM agents WHERE user_id = ${userId} AND deleted_at IS NULL) < ${plan.maxAgents}`);
    inserted = result.meta.changes;
  } catch (err) {
    if (isUniqueViolation(err)) throw nameTaken(input.name);
    throw err;
  }
  if (inserted === 0) {
    const current = await db
      .select({ n: count() })
      .from(agents)
      .where(and(eq(agents.userId, userId), isNull(agents.deletedAt)))
      .get();
    throw planLimitExceeded({ limit: "agents", tier: plan.tier, max: plan.maxAgents, current: current?.n ?? 0 });
  }
  return row;
}

export async function updateAgent(
  deps: TenantDeps,
  agentId: string,
  patch: { name?: string; description?: string | null },
): Promise<AgentRow> {
  const existing = await getAgent(deps, agentId);
  if (patch.name === undefined && patch.description === undefined) return existing;
  try {
    const [row] = await deps.db
      .update(agents)
      .set({ ...patch, updatedAt: Date.now() })
      .where(and(eq(agents.id, agentId), eq(agents.userId, deps.userId), isNull(agents.deletedAt)))
      .returning();
    if (!row) throw agentNotFound(agentId);
    return row;
  } catch (err) {
    if (isUniqueViolation(err)) throw nameTaken(patch.name ?? existing.name);
    throw err;
  }
}

export async function disableAgent(deps: TenantDeps, agentId: string): Promise<AgentRow> {
  if (!isIdOf("agent", agentId)) throw agentNotFound(agentId);
  const [row] = await deps.db
    .update(agents)
    .set({ status: "disabled", updatedAt: Date.now() })
    .where(and(eq(agents.id, agentId), eq(agents.userId, deps.userId), isNull(agents.deletedAt)))
    .returning();
  if (!row) throw agentNotFound(agentId);
  forgetAgentRoute({ userId: deps.userId, agentId });
  return row;
}

/** Tombstones the agent: it disappears from every read and its name becomes free again. */
export async function deleteAgent(deps: TenantDeps, agentId: string): Promise<AgentRow> {
  if (!isIdOf("agent", agentId)) throw agentNotFound(agentId);
  const now = Date.now();
  const [row] = await deps.db
    .update(agents)
    .set({ status: "disabled", deletedAt: now, updatedAt: now })
    .where(and(eq(agents.id, agentId), eq(agents.userId, deps.userId), isNull(agents.deletedAt)))
    .returning();
  if (!row) throw agentNotFound(agentId);
  forgetAgentRoute({ userId: deps.userId, agentId });
  return row;
}
