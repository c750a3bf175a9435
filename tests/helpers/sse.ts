// The Workers-runtime tests read the gateway's streams with the shared reader
// (scripts/lib/sse.ts), data parsed as JSON, and strictly: a stream that ends inside an event
// fails the test instead of losing the event quietly.
import { collectJsonSse, type JsonSseEvent, readJsonSse } from "../../scripts/lib/sse.ts";

export type SseEvent = JsonSseEvent;

export function sseEvents(res: Response): AsyncGenerator<JsonSseEvent> {
  return readJsonSse(res, { unterminated: "throw" });
}

export function collectSse(res: Response): Promise<JsonSseEvent[]> {
  return collectJsonSse(res, { unterminated: "throw" });
}
