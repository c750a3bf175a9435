// Drives a run: reads the relayed events of the agent's stream (invoke/sse.ts relaySse), numbers
// them 1, 2, 3, …, sends each to the client that started the run (if it is still there) at once,
// and records them in the run's Durable Object in batches behind it: one append in flight at a
// time, carrying everything that arrived meanwhile (and within RECORD_BATCH_MS of its first
// event), so recording never delays relaying. The
// driver does not depend on the client: a client that goes away stops receiving, the run goes on
// to its end (the relay's own deadlines bound it). A cancel recorded in the Durable Object stops
// the relay, which cancels the agent's stream, and aborts the agent's request.
import { utf8 } from "../../crypto/encoding";
import { describeError, logError } from "../../lib/logger";
import type { RelayEnd } from "../invoke/sse";
import { blockData, blockName, sseBlock, toBlock, withId } from "./sse-blocks";
import { MAX_RUN_BYTES, MAX_RUN_EVENTS, type RunEnd, type RunRecorderApi, runStatusFor } from "./types";

const eventDecoder = new TextDecoder();

/** How long an append waits for more events after the first of its batch. */
const RECORD_BATCH_MS = 4;

/** Room kept for the terminal event when a run reaches its size limit. */
const TERMINAL_RESERVE_BYTES = 4 * 1024;

export type StopReason = "cancelled" | "run_event_limit" | "run_size_limit";

const STOP_MESSAGES: Record<StopReason, string> = {
  cancelled: "the run was cancelled",
  run_event_limit: `the run reached its limit of ${MAX_RUN_EVENTS} events`,
  run_size_limit: `the run reached its limit of ${MAX_RUN_BYTES} bytes of events`,
};

export type DriveOptions = {
  runId: string;
  recorder: RunRecorderApi;
  /** Settles once the run's record is stored; every append waits for it. */
  started: Promise<void>;
  /**
   * Stores the run's record (idempotent). Called on a timer once the first event has been handed
   * to the client, so that event leaves before the object's storage is touched (a new object's
   * storage is created then, and under wrangler dev that happens on the thread the event leaves
   * by); and at once with the second event, so a burst of events, during which a timer does not
   * fire, cannot leave the run unstored for as long as the burst lasts.
   */
  beginRecord: () => void;
  /** Resolves true when the run is cancelled (the Durable Object's `untilCancelled`). */
  cancelled: Promise<boolean>;
  /** The relayed events, one chunk per event (relaySse). Its `cancel(reason)` ends the relay with that code. */
  events: ReadableStream<Uint8Array>;
  /** How the relay ended (relaySse's onEnd), settled by the time `events` is done. */
  relayEnd: Promise<RelayEnd>;
  /** Aborts the agent's request. */
  abortAgent: (reason: StopReason) => void;
  /** Whether a client is attached (the /stream caller); a background run has none. */
  attach: boolean;
  waitUntil: (promise: Promise<unknown>) => void;
};

/** Starts driving the run; answers the client's stream (ids on every event), or null for a background run. */
export function driveRun(opts: DriveOptions): ReadableStream<Uint8Array> | null {
  let client: ReadableStreamDefaultController<Uint8Array> | null = null;
  const clientStream = opts.attach
    ? new ReadableStream<Uint8Array>({
        start(controller) {
          client = controller;
        },
        cancel() {
          // The client went away: the run goes on, recorded for a later `events` call.
          client = null;
        },
      })
    : null;
  const toClient = (text: string) => {
    if (!client) return;
    try {
      client.enqueue(utf8.encode(text));
    } catch {
      client = null;
    }
  };
  const closeClient = () => {
    try {
      client?.close();
    } catch {}
    client = null;
  };

  // Recording: one append in flight, the next batch gathers behind it.
  let queue: string[] = [];
  let queueFrom = 1;
  let endRecord: RunEnd | undefined;
  let flushing: Promise<void> | null = null;
  const flush = async () => {
    try {
      await opts.started;
    } catch (err) {
      logError("run_record_failed", { runId: opts.runId, error: describeError(err) });
      flushing = null;
      return;
    }
    while (queue.length > 0 || endRecord !== undefined) {
      // A burst of events becomes one append: one storage write (on Cloudflare, one wait of the
      // object's output gate) instead of one per event. The run's end is recorded at once.
      if (endRecord === undefined) await new Promise((resolve) => setTimeout(resolve, RECORD_BATCH_MS));
      const blocks = queue;
      const from = queueFrom;
      const end = endRecord;
      queue = [];
      queueFrom += blocks.length;
      endRecord = undefined;
      const result = await appendWithRetry(opts, from, blocks, end);
      if (result?.cancel && !end) stop("cancelled");
    }
    flushing = null;
  };
  const record = () => {
    flushing ??= flush();
  };

  const reader = opts.events.getReader();
  let stopReason: StopReason | null = null;
  let reading = true;
  const stop = (reason: StopReason) => {
    if (stopReason || !reading) return;
    stopReason = reason;
    opts.abortAgent(reason);
    reader.cancel(reason).catch(() => {});
  };
  opts.cancelled.then((yes) => yes && stop("cancelled")).catch(() => {});

  let seq = 0;
  let bytes = 0;
  const emit = (block: string) => {
    seq++;
    bytes += utf8.encode(block).byteLength;
    toClient(withId(seq, block));
    if (seq === 1) setTimeout(opts.beginRecord, 0);
    else if (seq === 2) opts.beginRecord();
    queue.push(block);
    record();
  };

  const pump = async () => {
    let terminal = false;
    let answer: unknown;
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch {
        break;
      }
      if (chunk.done || stopReason) break;
      // One whole event per chunk (relaySse): decoded alone, so one decoder serves every run.
      const block = toBlock(eventDecoder.decode(chunk.value));
      if (block.trim() === "") continue;
      // A comment-only block (`: ping`) keeps a quiet stream alive: relayed, but not an event of
      // the run (no id, not recorded).
      if (block.split("\n").every((line) => line.startsWith(":"))) {
        toClient(`${block}\n\n`);
        continue;
      }
      const name = blockName(block);
      const isTerminal = name === "done" || name === "error";
      // A terminal event always fits: the limits keep room for it.
      if (!isTerminal && seq + 1 >= MAX_RUN_EVENTS) {
        stop("run_event_limit");
        break;
      }
      if (!isTerminal && bytes + utf8.encode(block).byteLength > MAX_RUN_BYTES - TERMINAL_RESERVE_BYTES) {
        stop("run_size_limit");
        break;
      }
      emit(block);
      if (name === "done") answer = blockData(block);
      if (isTerminal) {
        terminal = true;
        break;
      }
    }
    reading = false;
    const relayEnd = await opts.relayEnd;
    let end: RunEnd;
    if (stopReason) {
      emit(sseBlock("error", { code: stopReason, message: STOP_MESSAGES[stopReason] }));
      end = { status: runStatusFor({ ok: false, errorCode: stopReason }), errorCode: stopReason };
    } else if (!terminal) {
      // The relay always ends with done or error; should it not, the run still ends with one.
      const code = relayEnd.errorCode ?? "upstream_invalid_response";
      emit(sseBlock("error", { code, message: "the agent's stream ended unexpectedly" }));
      end = { status: runStatusFor({ ok: false, errorCode: code }), errorCode: code };
    } else {
      end = { status: runStatusFor(relayEnd), ...(relayEnd.errorCode ? { errorCode: relayEnd.errorCode } : {}) };
      if (relayEnd.ok) end.answer = answer;
    }
    closeClient();
    endRecord = end;
    record();
    while (flushing) await flushing;
  };
  opts.waitUntil(
    pump().catch((err) => {
      logError("run_drive_failed", { runId: opts.runId, error: describeError(err) });
    }),
  );
  return clientStream;
}

/** One append, retried once (the Durable Object skips events it already has). */
async function appendWithRetry(
  opts: Pick<DriveOptions, "recorder" | "runId">,
  from: number,
  blocks: string[],
  end: RunEnd | undefined,
): Promise<{ cancel: boolean } | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await opts.recorder.append(from, blocks, end);
    } catch (err) {
      if (attempt >= 2) {
        logError("run_record_failed", { runId: opts.runId, from, events: blocks.length, error: describeError(err) });
        return null;
      }
    }
  }
}
