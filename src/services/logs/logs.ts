// Reading an agent's logs: a page (newest first) or a follow stream. The agent must be the
// caller's (anyone else gets the same 404 as for an agent that does not exist); the caller's tier
// bounds what is kept and how many lines a second a follower is sent.
import { ApiError } from "../../lib/errors";
import { decodeCursor, encodeCursor } from "../../lib/pagination";
import { getAgent } from "../agents/agents";
import type { TenantDeps } from "../tenant";
import type { TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import { bufferLimits } from "./ingest";
import { type AgentLogStores, type LogFilter, type LogPage, MAX_LOG_FOLLOWERS } from "./types";

export type LogReadDeps = TenantDeps & {
  tierLimits: TierLimitsByTier;
  logs: AgentLogStores;
  waitUntil?: (promise: Promise<unknown>) => void;
};

const LINE_ID = /^[1-9][0-9]{0,15}$/;

async function ownAgentLimits(deps: LogReadDeps, agentId: string) {
  await getAgent(deps, agentId);
  const { limits } = await limitsForUser(deps.db, deps.userId, deps.tierLimits, { waitUntil: deps.waitUntil });
  return limits;
}

export async function listAgentLogs(
  deps: LogReadDeps,
  agentId: string,
  filter: LogFilter,
  page: { limit: number; cursor?: string },
): Promise<LogPage> {
  const limits = await ownAgentLimits(deps, agentId);
  const before = page.cursor === undefined ? undefined : Number(decodeCursor(page.cursor, LINE_ID));
  const result = await deps.logs(agentId).list(filter, { limit: page.limit, before }, bufferLimits(limits));
  return { logs: result.logs, nextCursor: result.nextCursor === null ? null : encodeCursor(result.nextCursor) };
}

/**
 * The follow stream. `after` (a line id, from Last-Event-ID or `?after=`) replays what came
 * after it first; without it, lines since `filter.since` are replayed when given, else only new
 * lines are sent.
 */
export async function followAgentLogs(
  deps: LogReadDeps,
  agentId: string,
  filter: LogFilter,
  after: number | undefined,
): Promise<ReadableStream<Uint8Array>> {
  const limits = await ownAgentLimits(deps, agentId);
  const from = after ?? (filter.since !== undefined ? 0 : undefined);
  const stream = await deps.logs(agentId).follow(filter, from, limits.logLinesPerSecond, bufferLimits(limits));
  if (!stream) {
    throw new ApiError(
      "rate_limited",
      `agent ${agentId} already has ${MAX_LOG_FOLLOWERS} live log followers; close one`,
      {
        headers: { "retry-after": "5" },
      },
    );
  }
  return stream;
}
