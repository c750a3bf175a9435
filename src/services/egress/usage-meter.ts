// Reads token usage out of a model provider's answer while passing it through untouched: each
// chunk is handed on as it arrives (pull-based, nothing held back). JSON answers are also copied
// (up to MAX_METERED_JSON_BYTES) and parsed when they end; SSE answers are parsed event by event.
// Understands OpenAI-compatible (`usage.prompt_tokens` / `completion_tokens`, the final usage
// chunk of a stream) and Anthropic (`usage.input_tokens` / `output_tokens`, `message_start` and
// the cumulative `message_delta`) answers.

/** A JSON answer larger than this passes through but is not metered (its tokens are unknown). */
export const MAX_METERED_JSON_BYTES = 4 * 1024 * 1024;

export type MeteredUsage = {
  inputTokens: number | undefined;
  outputTokens: number | undefined;
  model: string | undefined;
};

export type StreamOutcome = MeteredUsage & {
  bytes: number;
  /** `ok`: the body ended; `cancelled`: the agent stopped reading; `error`: the upstream failed. */
  end: "ok" | "cancelled" | "error";
};

const nonNegativeInt = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : undefined;

/** Folds one parsed JSON object of an answer into what is known so far (maxima: Anthropic's counts are cumulative). */
export function foldUsage(into: MeteredUsage, value: unknown): void {
  if (typeof value !== "object" || value === null) return;
  const obj = value as Record<string, unknown>;
  const message =
    typeof obj.message === "object" && obj.message !== null ? (obj.message as Record<string, unknown>) : {};
  const model = obj.model ?? message.model;
  if (typeof model === "string" && model !== "" && into.model === undefined) into.model = model.slice(0, 128);
  const usage = obj.usage ?? message.usage;
  if (typeof usage !== "object" || usage === null) return;
  const u = usage as Record<string, unknown>;
  const input = nonNegativeInt(u.prompt_tokens) ?? nonNegativeInt(u.input_tokens);
  const output = nonNegativeInt(u.completion_tokens) ?? nonNegativeInt(u.output_tokens);
  if (input !== undefined) into.inputTokens = Math.max(into.inputTokens ?? 0, input);
  if (output !== undefined) into.outputTokens = Math.max(into.outputTokens ?? 0, output);
}

/** Parses `data:` lines of an SSE stream as they complete. */
class SseUsageParser {
  #pending = "";
  #decoder = new TextDecoder();
  constructor(private readonly usage: MeteredUsage) {}
  push(chunk: Uint8Array): void {
    this.#pending += this.#decoder.decode(chunk, { stream: true });
    let newline = this.#pending.indexOf("\n");
    while (newline >= 0) {
      this.#line(this.#pending.slice(0, newline));
      this.#pending = this.#pending.slice(newline + 1);
      newline = this.#pending.indexOf("\n");
    }
    // A line longer than any usage event is not one: drop it instead of growing without bound.
    if (this.#pending.length > 1024 * 1024) this.#pending = "";
  }
  end(): void {
    this.#pending += this.#decoder.decode();
    if (this.#pending !== "") this.#line(this.#pending);
    this.#pending = "";
  }
  #line(raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!line.startsWith("data:")) return;
    const data = line.slice(5).trim();
    if (!data.startsWith("{") || (!data.includes('"usage"') && !data.includes('"model"'))) return;
    try {
      foldUsage(this.usage, JSON.parse(data));
    } catch {
      // not JSON: not a usage event
    }
  }
}

/**
 * Passes `body` through, metering it; `onEnd` is called once, when the body ends, fails or the
 * reader cancels. `kind` picks the parser: `sse`, `json`, or `none` (bytes only).
 */
export function meterBody(
  body: ReadableStream<Uint8Array>,
  kind: "sse" | "json" | "none",
  onEnd: (outcome: StreamOutcome) => void,
): ReadableStream<Uint8Array> {
  const usage: MeteredUsage = { inputTokens: undefined, outputTokens: undefined, model: undefined };
  const sse = kind === "sse" ? new SseUsageParser(usage) : undefined;
  const jsonParts: Uint8Array[] = [];
  let jsonBytes = 0;
  let bytes = 0;
  let ended = false;
  const finish = (end: StreamOutcome["end"]) => {
    if (ended) return;
    ended = true;
    if (end === "ok") {
      sse?.end();
      if (kind === "json" && jsonBytes <= MAX_METERED_JSON_BYTES) {
        try {
          const all = new Uint8Array(jsonBytes);
          let at = 0;
          for (const part of jsonParts) {
            all.set(part, at);
            at += part.byteLength;
          }
          foldUsage(usage, JSON.parse(new TextDecoder().decode(all)));
        } catch {
          // not JSON after all: no tokens
        }
      }
    }
    jsonParts.length = 0;
    onEnd({ ...usage, bytes, end });
  };
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (err) {
          finish("error");
          controller.error(err);
          return;
        }
        if (result.done) {
          finish("ok");
          controller.close();
          return;
        }
        const chunk = result.value;
        bytes += chunk.byteLength;
        if (sse) sse.push(chunk);
        else if (kind === "json" && jsonBytes + chunk.byteLength <= MAX_METERED_JSON_BYTES)
          jsonParts.push(chunk.slice());
        if (kind === "json") jsonBytes += chunk.byteLength;
        controller.enqueue(chunk);
      },
      cancel(reason) {
        finish("cancelled");
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
