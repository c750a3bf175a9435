// Turns the runtime's trace of one invocation of an agent's script (a Tail Worker event: its
// console.* lines, uncaught exceptions and outcome) into log lines, with the agent's own secret
// values redacted and each message cut at MAX_MESSAGE_BYTES. Pure: identity and secrets are
// resolved by the caller (services/logs/ingest.ts).
import { type CapturedTrace, QUIET_OUTCOMES } from "../../runtime/traces";
import { LOG_LEVELS, type LogLevel, MAX_MESSAGE_BYTES, type NewLogLine } from "./types";

/** What replaces a secret value in a captured line. */
export const REDACTED = "[redacted]";
/** Shorter values are not redacted: a 1–3 character "secret" would blank out ordinary text. */
export const MIN_REDACTED_LENGTH = 4;
const TRUNCATED = "…[truncated]";

/** The request headers the gateway sends the agent (services/invoke/call.ts) that name the call. */
const REQUEST_ID_HEADER = "x-request-id";
const RUN_ID_HEADER = "x-run-id";

export type Redactor = (text: string) => string;

/** A redactor for these secret values (and their JSON-escaped forms, as JSON.stringify prints them). */
export function redactorFor(secretValues: readonly string[]): Redactor {
  const needles = new Set<string>();
  for (const v of secretValues) {
    if (v.length < MIN_REDACTED_LENGTH) continue;
    needles.add(v);
    needles.add(JSON.stringify(v).slice(1, -1));
  }
  // Longest first, so a secret that contains another is replaced whole.
  const sorted = [...needles].sort((a, b) => b.length - a.length);
  if (sorted.length === 0) return (t) => t;
  return (text) => {
    let out = text;
    for (const n of sorted) if (out.includes(n)) out = out.split(n).join(REDACTED);
    return out;
  };
}

/** The message cut to at most MAX_MESSAGE_BYTES of UTF-8 (never inside a character). */
export function truncateMessage(message: string): string {
  const bytes = new TextEncoder().encode(message);
  if (bytes.byteLength <= MAX_MESSAGE_BYTES) return message;
  const room = MAX_MESSAGE_BYTES - new TextEncoder().encode(TRUNCATED).byteLength;
  let cut = new TextDecoder().decode(bytes.subarray(0, room));
  // A character split by the cut decodes as U+FFFD: drop it.
  if (cut.endsWith("\uFFFD")) cut = cut.slice(0, -1);
  return cut + TRUNCATED;
}

/** console.log's arguments as one line: strings as they are, anything else as JSON. */
export function formatLogMessage(message: unknown): string {
  const parts = Array.isArray(message) ? message : [message];
  return parts
    .map((p) => {
      if (typeof p === "string") return p;
      try {
        return JSON.stringify(p) ?? String(p);
      } catch {
        return String(p);
      }
    })
    .join(" ");
}

function levelOf(level: string): LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level) ? (level as LogLevel) : "log";
}

/** The lines of one traced invocation of `deploymentId`, in the order they happened. */
export function linesFromTrace(trace: CapturedTrace, deploymentId: string, redact: Redactor): NewLogLine[] {
  const headers = requestHeaders(trace.event);
  const requestId = headers?.[REQUEST_ID_HEADER] ?? null;
  const runId = headers?.[RUN_ID_HEADER] ?? null;
  const at = trace.eventTimestamp ?? Date.now();
  const line = (ts: number, level: LogLevel, message: string): NewLogLine => ({
    ts,
    level,
    message: truncateMessage(redact(message)),
    deploymentId,
    requestId,
    runId,
  });
  const out: NewLogLine[] = [];
  for (const log of trace.logs ?? []) out.push(line(log.timestamp, levelOf(log.level), formatLogMessage(log.message)));
  for (const ex of trace.exceptions ?? []) out.push(line(ex.timestamp, "error", `Uncaught ${ex.name}: ${ex.message}`));
  if (trace.truncated) out.push(line(at, "warn", "the runtime dropped some of this invocation's log lines (too many)"));
  if (trace.outcome && !QUIET_OUTCOMES.has(trace.outcome)) {
    out.push(line(at, "error", `the invocation ended with outcome ${trace.outcome}`));
  }
  return out.sort((a, b) => a.ts - b.ts);
}

function requestHeaders(event: TraceItem["event"]): Record<string, string> | undefined {
  if (!event || !("request" in event)) return undefined;
  const request = (event as TraceItemFetchEventInfo).request;
  return request && typeof request.headers === "object" ? request.headers : undefined;
}
