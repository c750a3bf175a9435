// The one Server-Sent Events reader (the e2e suite, the Workers-runtime tests, the bench, the
// demo): parses `event:` / `data:` / `id:` lines from a fetch body as the bytes arrive (WHATWG
// "event stream interpretation") and yields each event the moment its terminating blank line is
// read, stamped with its arrival time, so callers can check that a stream is delivered
// incrementally rather than buffered. Web-platform code only: it runs in Node and in workerd.

export type SseEvent = {
  /** `event:` field; "message" when the event has none. */
  event: string;
  /** `data:` lines joined with "\n". */
  data: string;
  /** Last `id:` seen on the stream so far, if any. */
  id?: string;
  /** `performance.now()` when the chunk completing this event was read. */
  receivedAt: number;
};

export type ReadSseOptions = {
  /** Clock for `receivedAt` (default performance.now). */
  now?: () => number;
  /**
   * What to do with bytes left after the last blank line: "drop" them as browsers do (default),
   * or "throw", for tests that hold a server to terminating every event it sends.
   */
  unterminated?: "drop" | "throw";
};

/** Yields the events of an SSE body in order. */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  options: ReadSseOptions = {},
): AsyncGenerator<SseEvent> {
  const now = options.now ?? (() => performance.now());
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let finished = false;
  let eventType = "";
  let data: string[] = [];
  let lastId: string | undefined;
  // A CR that ended the previous chunk: an LF opening the next chunk belongs to it.
  let pendingCr = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        if (options.unterminated === "throw" && (buffer.trim() !== "" || data.length > 0 || eventType !== "")) {
          throw new Error(`stream ended inside an event: ${JSON.stringify(buffer)}`);
        }
        return;
      }
      const receivedAt = now();
      // The decoder drops a leading BOM and holds back an incomplete multi-byte character.
      let text = decoder.decode(value, { stream: true });
      if (text === "") continue;
      if (pendingCr && text.startsWith("\n")) text = text.slice(1);
      pendingCr = false;
      buffer += text;
      for (;;) {
        const end = lineEnd(buffer);
        if (!end) break;
        const line = buffer.slice(0, end.index);
        const crAtChunkEnd = buffer.charCodeAt(end.index) === 13 && end.index + 1 === buffer.length;
        buffer = buffer.slice(end.index + end.length);
        if (crAtChunkEnd) pendingCr = true;
        if (line === "") {
          if (data.length > 0) {
            yield { event: eventType || "message", data: data.join("\n"), id: lastId, receivedAt };
          }
          eventType = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") eventType = value;
        else if (field === "data") data.push(value);
        else if (field === "id" && !value.includes("\0")) lastId = value;
      }
    }
  } finally {
    // A consumer that stops early cancels the body, so the connection does not linger.
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** The first line break in `text`: CRLF, LF or a lone CR. */
function lineEnd(text: string): { index: number; length: number } | undefined {
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 10) return { index: i, length: 1 };
    if (ch === 13) return { index: i, length: text.charCodeAt(i + 1) === 10 ? 2 : 1 };
  }
  return undefined;
}

/** Reads a whole SSE response into a list of events. */
export async function collectSse(res: Response, options?: ReadSseOptions): Promise<SseEvent[]> {
  if (!res.body) return [];
  const events: SseEvent[] = [];
  for await (const event of readSse(res.body, options)) events.push(event);
  return events;
}

/** An event whose data has been parsed as JSON (left as text when it is not JSON). */
export type JsonSseEvent = Omit<SseEvent, "data"> & { data: any };

/** readSse with each event's data parsed as JSON, for streams whose events carry JSON. */
export async function* readJsonSse(res: Response, options?: ReadSseOptions): AsyncGenerator<JsonSseEvent> {
  if (!res.body) throw new Error("response has no body");
  for await (const event of readSse(res.body, options)) {
    let data: unknown = event.data;
    try {
      data = JSON.parse(event.data);
    } catch {
      // Not JSON: keep the text.
    }
    yield { ...event, data };
  }
}

/** Reads a whole SSE response of JSON events into a list. */
export async function collectJsonSse(res: Response, options?: ReadSseOptions): Promise<JsonSseEvent[]> {
  const events: JsonSseEvent[] = [];
  for await (const event of readJsonSse(res, options)) events.push(event);
  return events;
}
