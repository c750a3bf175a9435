// Recent raw metrics events of one of the caller's agents (gateway measurements and verified
// telemetry), newest first. Another user's agent is a 404 through getAgent.
//
// The query reads through metrics_events_agent_ts_idx whatever the planner's statistics say: the
// tenant filter is written `+user_id = ?` (SQLite's documented way to disqualify a term from
// index use), so the only index with an equality constraint is (agent_id, ts), which also yields
// the ts order. Without it, SQLite (no ANALYZE on D1 unless someone runs it) may pick
// (user_id, ts) and walk every event of the user to find a quiet agent's few. The filter itself
// is unchanged: it still checks the user on every row (getAgent has already checked ownership).
import { and, desc, eq, gte, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { metricsEvents } from "../../db/schema";
import { getAgent } from "../agents/agents";

export type MetricsEventRow = typeof metricsEvents.$inferSelect;

export async function listRecentEvents(
  deps: { db: Db; userId: string },
  input: { agentId: string; sinceMs?: number; limit: number },
): Promise<MetricsEventRow[]> {
  await getAgent(deps, input.agentId);
  return recentEventsQuery(deps, input);
}

/** The query listRecentEvents runs (exported so a test can EXPLAIN its exact SQL). */
export function recentEventsQuery(
  deps: { db: Db; userId: string },
  input: { agentId: string; sinceMs?: number; limit: number },
) {
  return deps.db
    .select()
    .from(metricsEvents)
    .where(
      and(
        eq(metricsEvents.agentId, input.agentId),
        sql`+${metricsEvents.userId} = ${deps.userId}`,
        input.sinceMs !== undefined ? gte(metricsEvents.ts, input.sinceMs) : undefined,
      ),
    )
    .orderBy(desc(metricsEvents.ts), desc(metricsEvents.id))
    .limit(input.limit);
}
