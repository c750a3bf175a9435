// What the runtime's trace of one invocation of user code (a Tail Worker event) holds that is
// worth keeping: its console lines, uncaught exceptions, a truncation, or an outcome that is the
// agent's failure. Here, below the log service, so that the agent host (src/agent-host/) can drop
// empty traces before they cross to the gateway; services/logs/capture.ts turns the rest into lines.

/** The fields of a TraceItem the platform reads (the runtime's type, narrowed to what is used). */
export type CapturedTrace = Pick<TraceItem, "logs" | "exceptions" | "outcome" | "truncated" | "eventTimestamp"> & {
  event: TraceItem["event"];
};

/** Outcomes that are not the agent's failure: the client went away. */
export const QUIET_OUTCOMES: ReadonlySet<string> = new Set(["ok", "canceled", "responseStreamDisconnected"]);

/** Whether a trace holds anything to store (services/logs/capture.ts linesFromTrace would return lines). */
export function hasContent(trace: CapturedTrace): boolean {
  return (
    (trace.logs?.length ?? 0) > 0 ||
    (trace.exceptions?.length ?? 0) > 0 ||
    trace.truncated ||
    Boolean(trace.outcome && !QUIET_OUTCOMES.has(trace.outcome))
  );
}
