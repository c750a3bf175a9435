// A small Server-Sent Events reader for the e2e suite: parses `event:` / `data:` / `id:` lines
// from a fetch body as the bytes arrive (WHATWG "event stream interpretation") and yields each
// event the moment its terminating blank line is read, stamped with its arrival time, so tests
// can check that a stream is delivered incrementally rather than buffered.

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

/** Yields the events of an SSE body in order; an unterminated last event is dropped, as in browsers. */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  now: () => number = () => performance.now(),
): AsyncGenerator<SseEvent> {
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
export async function collectSse(res: Response): Promise<SseEvent[]> {
  if (!res.body) return [];
  const events: SseEvent[] = [];
  for await (const event of readSse(res.body)) events.push(event);
  return events;
}
