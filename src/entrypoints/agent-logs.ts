// The AgentLogs Durable Object: one per agent (named by the agent id). It keeps the agent's last
// log lines in its SQLite storage, bounded by the owner's tier (`logLines` lines, none older than
// `logRetentionHours`; an alarm empties it after a retention period without writes), serves pages
// of them, and streams new ones to followers as server-sent events. A follower that falls behind
// the tier's `logLinesPerSecond` is sent `sampled` events counting what it was not sent, instead
// of being refused or cut off. Lines arrive already redacted and truncated
// (services/logs/capture.ts); the gateway checks who may read them.
import { DurableObject } from "cloudflare:workers";
import {
  type AgentLogsApi,
  LEVEL_RANK,
  LOG_HEARTBEAT_MS,
  type LogBufferLimits,
  type LogFilter,
  type LogLevel,
  type LogLine,
  type LogPage,
  MAX_LOG_FOLLOWERS,
  MAX_LOG_PAGE,
  type NewLogLine,
} from "../services/logs/types";

/** Most stored lines a new follower is sent before the live ones (older ones are counted as dropped). */
export const MAX_FOLLOW_REPLAY = MAX_LOG_PAGE;
/** The sampling window: at most `linesPerSecond` lines per follower in each. */
const SAMPLING_WINDOW_MS = 1_000;

type Row = {
  id: number;
  ts: number;
  level: string;
  message: string;
  deployment_id: string;
  request_id: string | null;
  run_id: string | null;
};

type Follower = { filter: LogFilter; offer(line: LogLine): void };

const encoder = new TextEncoder();
const heartbeat = encoder.encode(": heartbeat\n\n");

export function logEvent(line: LogLine): string {
  return `id: ${line.id}\nevent: log\ndata: ${JSON.stringify(line)}\n\n`;
}

export function sampledEvent(dropped: number): string {
  return `event: sampled\ndata: ${JSON.stringify({ dropped })}\n\n`;
}

// It reads no bindings: the gateway hands it the lines and the tier's bounds.
/** Bytes queued for one follower that has not read them before its new lines count as dropped. */
const FOLLOWER_BUFFER_BYTES = 1024 * 1024;

export class AgentLogs extends DurableObject<object> implements AgentLogsApi {
  private readonly followers = new Set<Follower>();

  constructor(ctx: DurableObjectState, env: object) {
    super(ctx, env);
    // AUTOINCREMENT: an id is never reused after its line is trimmed, so a follower's
    // Last-Event-ID always means "after this line".
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS lines (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      ts INTEGER NOT NULL,
      level TEXT NOT NULL,
      rank INTEGER NOT NULL,
      message TEXT NOT NULL,
      deployment_id TEXT NOT NULL,
      request_id TEXT,
      run_id TEXT
    )`);
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS lines_ts ON lines (ts)");
  }

  async append(lines: NewLogLine[], limits: LogBufferLimits): Promise<void> {
    const sql = this.ctx.storage.sql;
    const stored: LogLine[] = [];
    for (const l of lines) {
      const row = sql
        .exec<{ id: number }>(
          "INSERT INTO lines (ts, level, rank, message, deployment_id, request_id, run_id) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
          l.ts,
          l.level,
          LEVEL_RANK[l.level],
          l.message,
          l.deploymentId,
          l.requestId,
          l.runId,
        )
        .one();
      stored.push(
        toLine({
          ...row,
          ts: l.ts,
          level: l.level,
          message: l.message,
          deployment_id: l.deploymentId,
          request_id: l.requestId,
          run_id: l.runId,
        }),
      );
    }
    this.trim(limits);
    for (const line of stored) for (const f of this.followers) if (matches(f.filter, line)) f.offer(line);
    // Nothing written for a whole retention period: the alarm deletes what is left.
    await this.ctx.storage.setAlarm(Date.now() + limits.retentionMs);
  }

  async list(filter: LogFilter, page: { limit: number; before?: number }, limits: LogBufferLimits): Promise<LogPage> {
    const { where, args } = conditions(filter, limits);
    if (page.before !== undefined) {
      where.push("id < ?");
      args.push(page.before);
    }
    const rows = this.ctx.storage.sql
      .exec<Row>(
        `SELECT id, ts, level, message, deployment_id, request_id, run_id FROM lines WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT ?`,
        ...args,
        page.limit + 1,
      )
      .toArray();
    const more = rows.length > page.limit;
    const logs = rows.slice(0, page.limit).map(toLine);
    return { logs, nextCursor: more && logs.length > 0 ? String(logs[logs.length - 1]!.id) : null };
  }

  async follow(
    filter: LogFilter,
    after: number | undefined,
    linesPerSecond: number,
    limits: LogBufferLimits,
  ): Promise<ReadableStream<Uint8Array> | null> {
    if (this.followers.size >= MAX_LOG_FOLLOWERS) return null;
    const sql = this.ctx.storage.sql;
    let replay: LogLine[] = [];
    let skipped = 0;
    if (after !== undefined) {
      const { where, args } = conditions(filter, limits);
      where.push("id > ?");
      args.push(after);
      const clause = where.join(" AND ");
      const total = sql.exec<{ n: number }>(`SELECT count(*) AS n FROM lines WHERE ${clause}`, ...args).one().n;
      skipped = Math.max(0, total - MAX_FOLLOW_REPLAY);
      replay = sql
        .exec<Row>(
          `SELECT id, ts, level, message, deployment_id, request_id, run_id FROM lines WHERE ${clause} ORDER BY id DESC LIMIT ?`,
          ...args,
          MAX_FOLLOW_REPLAY,
        )
        .toArray()
        .reverse()
        .map(toLine);
    }
    let follower: Follower | null = null;
    let timers: Array<ReturnType<typeof setInterval>> = [];
    const stop = () => {
      for (const t of timers) clearInterval(t);
      timers = [];
      if (follower) this.followers.delete(follower);
    };
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          const send = (text: string | Uint8Array) => {
            try {
              controller.enqueue(typeof text === "string" ? encoder.encode(text) : text);
            } catch {
              stop();
            }
          };
          if (skipped > 0) send(sampledEvent(skipped));
          for (const line of replay) send(logEvent(line));
          // Registered in the same turn as the read above: no line can fall between replay and live.
          let windowStart = Date.now();
          let sentInWindow = 0;
          let dropped = 0;
          const flush = () => {
            if (dropped > 0) send(sampledEvent(dropped));
            dropped = 0;
          };
          const roll = () => {
            const now = Date.now();
            if (now - windowStart >= SAMPLING_WINDOW_MS) {
              flush();
              windowStart = now;
              sentInWindow = 0;
            }
          };
          follower = {
            filter,
            offer: (line) => {
              roll();
              // A follower that stops reading gets its lines counted as dropped once FOLLOWER_BUFFER
              // bytes wait for it, so the object's memory stays bounded whoever connects.
              if (sentInWindow < linesPerSecond && (controller.desiredSize ?? 0) > 0) {
                sentInWindow++;
                send(logEvent(line));
              } else dropped++;
            },
          };
          this.followers.add(follower);
          // A burst's count is reported once its window is over, even when no further line comes.
          timers.push(setInterval(roll, SAMPLING_WINDOW_MS));
          timers.push(setInterval(() => send(heartbeat), LOG_HEARTBEAT_MS));
        },
        cancel: () => stop(),
      },
      new ByteLengthQueuingStrategy({ highWaterMark: FOLLOWER_BUFFER_BYTES }),
    );
  }

  override async alarm(): Promise<void> {
    // Rows only, never deleteAll: AUTOINCREMENT's counter must survive so a line id is never
    // reused (a follower's Last-Event-ID from before would otherwise skip the new lines).
    this.ctx.storage.sql.exec("DELETE FROM lines");
  }

  private trim(limits: LogBufferLimits) {
    const sql = this.ctx.storage.sql;
    sql.exec("DELETE FROM lines WHERE ts < ?", Date.now() - limits.retentionMs);
    sql.exec("DELETE FROM lines WHERE id <= (SELECT max(id) FROM lines) - ?", limits.maxLines);
  }
}

function conditions(filter: LogFilter, limits: LogBufferLimits): { where: string[]; args: Array<string | number> } {
  const where = ["ts >= ?"];
  const args: Array<string | number> = [Math.max(filter.since ?? 0, Date.now() - limits.retentionMs)];
  if (filter.deploymentId !== undefined) {
    where.push("deployment_id = ?");
    args.push(filter.deploymentId);
  }
  if (filter.level !== undefined) {
    where.push("rank >= ?");
    args.push(LEVEL_RANK[filter.level]);
  }
  if (filter.q !== undefined && filter.q !== "") {
    where.push("instr(lower(message), lower(?)) > 0");
    args.push(filter.q);
  }
  return { where, args };
}

function matches(filter: LogFilter, line: LogLine): boolean {
  if (filter.since !== undefined && Date.parse(line.ts) < filter.since) return false;
  if (filter.deploymentId !== undefined && line.deploymentId !== filter.deploymentId) return false;
  if (filter.level !== undefined && LEVEL_RANK[line.level] < LEVEL_RANK[filter.level]) return false;
  if (filter.q && !line.message.toLowerCase().includes(filter.q.toLowerCase())) return false;
  return true;
}

function toLine(row: Row): LogLine {
  const line: LogLine = {
    id: row.id,
    ts: new Date(row.ts).toISOString(),
    level: row.level as LogLevel,
    message: row.message,
    deploymentId: row.deployment_id,
    requestId: row.request_id,
  };
  if (row.run_id) line.runId = row.run_id;
  return line;
}
