// An agent's log lines: what the agent printed (console.*), what it threw and how an invocation
// ended, captured by a tail of its script (services/logs/capture.ts) and kept per agent in the
// AgentLogs Durable Object (entrypoints/agent-logs.ts). The types the capture, the routes and the
// Durable Object share.

/** The levels a line can have, least severe first (`info` and `log` rank alike). */
export const LOG_LEVELS = ["debug", "info", "log", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** How severe a level is: a `level` filter keeps lines at least this severe. */
export const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, log: 1, warn: 2, error: 3 };

/** A message longer than this (UTF-8 bytes) is cut, and ends with "…[truncated]". */
export const MAX_MESSAGE_BYTES = 4 * 1024;

/** Most lines one GET returns. */
export const MAX_LOG_PAGE = 1_000;
export const DEFAULT_LOG_PAGE = 100;

/** Longest `q` (substring search). */
export const MAX_LOG_QUERY_CHARS = 200;

/** Live followers one agent's log buffer serves at once (each is bounded in memory too). */
export const MAX_LOG_FOLLOWERS = 20;

/** Comment line sent to idle followers so proxies keep the connection open. */
export const LOG_HEARTBEAT_MS = 15_000;

/** One line as the API returns it. */
export type LogLine = {
  id: number;
  ts: string;
  level: LogLevel;
  message: string;
  deploymentId: string;
  requestId: string | null;
  runId?: string;
};

/** A line before the agent's Durable Object numbers it (`ts` in ms since epoch). */
export type NewLogLine = {
  ts: number;
  level: LogLevel;
  message: string;
  deploymentId: string;
  requestId: string | null;
  runId: string | null;
};

/** Which lines a read wants. */
export type LogFilter = {
  /** Only lines at or after this time (ms since epoch). */
  since?: number;
  deploymentId?: string;
  /** Only lines at least this severe. */
  level?: LogLevel;
  /** Only lines whose message contains this text (case-insensitive). */
  q?: string;
};

/** The caller's tier's bounds on the buffer, applied on every write and read. */
export type LogBufferLimits = { maxLines: number; retentionMs: number };

export type LogPage = { logs: LogLine[]; nextCursor: string | null };

/** The AgentLogs Durable Object's RPC surface (one object per agent, named by the agent id). */
export interface AgentLogsApi {
  append(lines: NewLogLine[], limits: LogBufferLimits): Promise<void>;
  /** Newest first: up to `limit` lines older than `before` (a line id), matching the filter. */
  list(filter: LogFilter, page: { limit: number; before?: number }, limits: LogBufferLimits): Promise<LogPage>;
  /**
   * Server-sent events: the stored lines after `after` that match, then new ones live, never
   * ending on its own; above `linesPerSecond` lines are dropped and counted in `sampled` events.
   * `after` undefined: only lines stored from now on. Null when the agent already has
   * MAX_LOG_FOLLOWERS followers.
   */
  follow(
    filter: LogFilter,
    after: number | undefined,
    linesPerSecond: number,
    limits: LogBufferLimits,
  ): Promise<ReadableStream<Uint8Array> | null>;
}

/** An agent's log buffer, by agent id. */
export type AgentLogStores = (agentId: string) => AgentLogsApi;
