// Server-sent events between the user script and the client: a relay that forwards the agent's
// events one by one as they complete (never buffering the whole answer), the JSON-to-SSE adapter,
// and the `error` event that ends a stream that failed after it started.

import { RuntimeError } from "../../runtime/types";

const encoder = new TextEncoder();

/** Largest single SSE event relayed from an agent (the relay holds at most one unfinished event). */
export const MAX_SSE_EVENT_CHARS = 1024 * 1024;

export function sseEvent(name: "delta" | "done" | "error", data: unknown): Uint8Array {
  return encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** A JSON answer as a stream: its whole text as one `delta`, then `done` with the answer. */
export function adaptJsonToSse(answer: { output: { text: string } }): Uint8Array {
  const delta = sseEvent("delta", { text: answer.output.text });
  const done = sseEvent("done", answer);
  const out = new Uint8Array(delta.byteLength + done.byteLength);
  out.set(delta, 0);
  out.set(done, delta.byteLength);
  return out;
}

/**
 * The codes of the `error` event the gateway itself sends to end a stream (an agent's own `error`
 * event is relayed as it is).
 */
export type StreamErrorCode =
  | "upstream_timeout"
  | "upstream_exception"
  | "upstream_invalid_response"
  | "stream_time_limit"
  /** The platform lost the agent's stream (local: the agent host was restarted under it). */
  | "upstream_error";

/** How a relayed stream ended; `cutOff` when the gateway ended it with its own `error` event. */
export type RelayEnd = { ok: boolean; errorCode?: string; bytesOut: number; cutOff: boolean };

class IdleTimeout extends Error {}

/** `read`, or an IdleTimeout rejection once `deadline` (epoch ms) has passed. */
function readBefore<T>(read: Promise<T>, deadline: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new IdleTimeout()), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([read, timeout]).finally(() => {
    if (timer !== null) clearTimeout(timer);
  });
}

/** Name of an SSE event block (`message` when it has no `event:` line). */
function eventName(block: string): string {
  for (const line of block.split("\n")) if (line.startsWith("event:")) return line.slice(6).trim();
  return "message";
}

/**
 * Relays the agent's SSE stream. Each complete event is forwarded as soon as its blank line
 * arrives; the stream ends after the agent's `done` or `error` event. The client gets an `error`
 * event ({ code, message }) and the stream closes if the agent's stream fails, ends without
 * `done`, takes longer than `idleTimeoutMs` to complete an event (timed per event, from when the
 * client asks for the next one: bytes that do not finish an event do not count), or is still
 * open `maxDurationMs` after the relay started (`stream_time_limit`, whether or not the client is
 * reading). Whenever the relay ends, it cancels the agent's stream. `onEnd` runs exactly once.
 */
export function relaySse(
  upstream: ReadableStream<Uint8Array>,
  opts: { idleTimeoutMs: number; maxDurationMs: number; onEnd: (end: RelayEnd) => void },
): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let pending = "";
  let bytesOut = 0;
  let ended = false;
  let streamTimer: ReturnType<typeof setTimeout> | null = null;

  const end = (
    controller: ReadableStreamDefaultController<Uint8Array> | undefined,
    result: Omit<RelayEnd, "bytesOut" | "cutOff">,
    cutOff = false,
  ) => {
    if (ended) return;
    ended = true;
    if (streamTimer !== null) clearTimeout(streamTimer);
    if (controller) controller.close();
    reader.cancel().catch(() => {});
    opts.onEnd({ ...result, bytesOut, cutOff });
  };
  const send = (controller: ReadableStreamDefaultController<Uint8Array>, bytes: Uint8Array) => {
    if (ended) return;
    bytesOut += bytes.byteLength;
    controller.enqueue(bytes);
  };
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, code: StreamErrorCode, message: string) => {
    send(controller, sseEvent("error", { code, message }));
    end(controller, { ok: false, errorCode: code }, true);
  };

  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        // The overall deadline runs on its own timer, so it also ends a stream whose client has
        // stopped reading (no pull pending); the error event then waits in the queue.
        streamTimer = setTimeout(() => {
          const seconds = Math.round(opts.maxDurationMs / 1000);
          fail(controller, "stream_time_limit", `the stream reached its time limit of ${seconds} s`);
        }, opts.maxDurationMs);
      },
      async pull(controller) {
        // The client asked for the next event: the agent has idleTimeoutMs to complete it.
        const eventDeadline = Date.now() + opts.idleTimeoutMs;
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await readBefore(reader.read(), eventDeadline);
          } catch (err) {
            if (ended) return; // the client went away, or the stream's time ran out, while we waited
            if (err instanceof IdleTimeout) {
              fail(
                controller,
                "upstream_timeout",
                `the agent did not complete an event within ${opts.idleTimeoutMs} ms`,
              );
            } else if (err instanceof RuntimeError && err.fault !== "agent") {
              // Not the agent's doing: its detail is for the operator (the runtime logged it).
              fail(controller, "upstream_error", "the platform failed to run this agent's stream");
            } else {
              const detail = err instanceof Error ? err.message : String(err);
              fail(controller, "upstream_exception", `the agent's stream failed: ${detail.slice(0, 300)}`);
            }
            return;
          }
          if (ended) return;
          // Line endings are normalised on the joined text, and a trailing "\r" waits for the next
          // chunk (or the end), so a CRLF split across chunks still ends its line (and its event).
          if (!chunk.done) pending += decoder.decode(chunk.value, { stream: true });
          const complete = !chunk.done && pending.endsWith("\r") ? pending.slice(0, -1) : pending;
          pending = pending.slice(complete.length);
          buffer += complete.replace(/\r\n?/g, "\n");
          let forwarded = false;
          for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            if (block.trim() === "") continue;
            send(controller, encoder.encode(`${block}\n\n`));
            forwarded = true;
            const name = eventName(block);
            if (name === "done") return end(controller, { ok: true });
            if (name === "error") return end(controller, { ok: false, errorCode: "agent_error_event" });
          }
          if (chunk.done) {
            fail(controller, "upstream_invalid_response", "the agent's stream ended without a done event");
            return;
          }
          // What is left is one unfinished event: bound it, so an agent cannot grow the isolate's
          // memory (shared with other tenants' requests) by never ending an event.
          if (buffer.length > MAX_SSE_EVENT_CHARS) {
            fail(
              controller,
              "upstream_invalid_response",
              `an SSE event from the agent exceeds ${MAX_SSE_EVENT_CHARS} characters`,
            );
            return;
          }
          if (forwarded) return;
        }
      },
      cancel(reason) {
        // A run's driver stops the relay with its own code (cancelled, a run limit).
        end(undefined, { ok: false, errorCode: typeof reason === "string" ? reason : "client_disconnected" });
      },
    },
    { highWaterMark: 0 },
  );
}
