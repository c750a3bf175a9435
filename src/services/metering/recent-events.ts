// Recent raw metrics events of one of the caller's agents (gateway measurements and verified
// telemetry), newest first. Another user's agent is a 404 through getAgent.
import { and, desc, eq, gte } from "drizzle-orm";
import type { Db } from "../../db/client";
import { metricsEvents } from "../../db/schema";
import { getAgent } from "../agents/agents";

export type MetricsEventRow = typeof metricsEvents.$inferSelect;

export async function listRecentEvents(
  deps: { db: Db; userId: string },
  input: { agentId: string; sinceMs?: number; limit: number },
): Promise<MetricsEventRow[]> {
  await getAgent(deps, input.agentId);
  return deps.db
    .select()
    .from(metricsEvents)
    .where(
      and(
        eq(metricsEvents.agentId, input.agentId),
        eq(metricsEvents.userId, deps.userId),
        input.sinceMs !== undefined ? gte(metricsEvents.ts, input.sinceMs) : undefined,
      ),
    )
    .orderBy(desc(metricsEvents.ts), desc(metricsEvents.id))
    .limit(input.limit);
}
