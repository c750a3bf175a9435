// A run: one streamed invocation, recorded event by event by its own Durable Object
// (entrypoints/run-recorder.ts) so that a client can leave and come back. The types the driver
// (drive.ts), the routes and the Durable Object share.
import type { ProblemCode } from "../../lib/errors";
import type { SessionKey } from "../sessions/types";

export type RunStatus = "running" | "succeeded" | "failed" | "cancelled" | "timed_out";

/** Largest number of events one run records; the next one fails the run (`run_event_limit`). */
export const MAX_RUN_EVENTS = 10_000;
/** Largest total size (UTF-8 bytes of the events' text) one run records (`run_size_limit`). */
export const MAX_RUN_BYTES = 16 * 1024 * 1024;
/** How long a run's record is kept after it ends; an alarm then deletes it. */
export const RUN_RETENTION_MS = 24 * 60 * 60 * 1000;
/** Longest `wait` on a run. */
export const MAX_RUN_WAIT_SECONDS = 60;
/** How long a cancel waits for the run's driver to end the run before ending it itself. */
export const CANCEL_GRACE_MS = 5_000;

export type RunView = {
  id: string;
  agentId: string;
  deploymentId: string;
  status: RunStatus;
  createdAt: number;
  startedAt: number;
  endedAt: number | null;
  errorCode?: string;
};

/** What the gateway hands a run's Durable Object when it starts the run. */
export type RunStart = {
  id: string;
  userId: string;
  agentId: string;
  deploymentId: string;
  createdAt: number;
  startedAt: number;
  /** When the run must have ended at the latest (the stream's time limit plus the invoke timeout). */
  deadline: number;
};

/** The fields of the deployment a run calls that the call needs (a cold start reads the rest from D1). */
export type CallDeployment = {
  id: string;
  userId: string;
  agentId: string;
  runtimeProvider: string;
  scriptName: string;
  invokePath: string;
};

/**
 * An admitted invocation as plain data: everything calling the agent needs once the gateway has
 * routed it and checked its quota. The gateway calls from it directly (a direct call); a run hands
 * it to the run's Durable Object, which makes the call (services/runs/call.ts).
 */
export type CallSpec = {
  requestId: string;
  userId: string;
  agentId: string;
  /** The run this call is, if any (the agent's request names it in x-run-id). */
  runId?: string;
  deployment: CallDeployment;
  /** The invoke/v1 request body as sent to the agent, and its UTF-8 size. */
  payload: string;
  bytesIn: number;
  stream: boolean;
  /** How the call is metered: a preview (a deployment named by the caller) is told apart. */
  kind: "invoke" | "preview";
  /** When the gateway received the call (the measurement's start). */
  startedAt: number;
  limits: { cpuMs: number; subRequests: number };
  /** The tier's limit on the whole stream. */
  streamSeconds: number;
  /** The invoke timeout: until the agent answers, and between two events. */
  timeoutMs: number;
};

/** What a run's Durable Object needs to make its call: the call, and the session turn it holds. */
export type RunCall = {
  call: CallSpec;
  /** The session turn the run holds until it ends (services/sessions/resolve.ts). */
  sessionTurn?: { key: SessionKey; turnId: string };
};

/**
 * A /stream run's start, as its Durable Object answers it: the client's event stream once the
 * agent's stream has started, or the problem its call failed with before (the run records it too).
 */
export type RunOpening =
  | { stream: ReadableStream<Uint8Array> }
  | {
      problem: {
        code: ProblemCode;
        detail: string;
        headers?: Record<string, string>;
        extra?: Record<string, unknown>;
      };
    };

/** How a run ended, with the invoke/v1 answer of its `done` event when it succeeded. */
export type RunEnd = { status: Exclude<RunStatus, "running">; errorCode?: string; answer?: unknown };

/** The outcome of `wait`: the run, and once it has ended its answer or its terminal error. */
export type RunWaitResult = {
  run: RunView;
  response?: unknown;
  error?: { code: string; message: string };
};

/**
 * The Durable Object's RPC surface. The methods that take `userId` answer null for a run that
 * does not exist or belongs to someone else, so a stranger cannot tell the two apart.
 */
export interface RunRecorderApi {
  /** Does nothing: a call that creates the object ahead of `stream`. */
  wake(): Promise<void>;
  /**
   * A /stream run: the object calls the agent (it owns the call, so the run outlives the client
   * and the gateway's request) and answers the client's event stream, or the call's problem.
   */
  stream(run: RunStart, spec: RunCall): Promise<RunOpening>;
  /**
   * Records a background run's start with what its call needs, and sets the alarm that makes the
   * call: the Durable Object drives the run, not the gateway that answered 202.
   */
  startBackground(run: RunStart, spec: RunCall): Promise<void>;
  /** Records events `from`, `from + 1`, … (SSE blocks without their `id:` line); `cancel` tells the driver to stop. */
  append(from: number, blocks: string[], end?: RunEnd): Promise<{ cancel: boolean }>;
  /** Resolves true when the run is cancelled, false once it has ended otherwise. */
  untilCancelled(): Promise<boolean>;
  get(userId: string): Promise<RunView | null>;
  cancel(userId: string): Promise<{ run: RunView; alreadyEnded: boolean } | null>;
  events(userId: string, after: number): Promise<ReadableStream<Uint8Array> | null>;
  wait(userId: string, timeoutMs: number): Promise<RunWaitResult | null>;
}

/** Finds a run's Durable Object. */
export type RunRecorders = (runId: string) => RunRecorderApi;

/** Maps how a stream ended to the run's status. */
export function runStatusFor(end: { ok: boolean; errorCode?: string }): RunEnd["status"] {
  if (end.ok) return "succeeded";
  switch (end.errorCode) {
    case "cancelled":
      return "cancelled";
    case "upstream_timeout":
    case "stream_time_limit":
    case "timed_out":
      return "timed_out";

    default:
      return "failed";
  }
}
