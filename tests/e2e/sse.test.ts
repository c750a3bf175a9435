// Unit tests of the SSE reader (scripts/lib/sse.ts) that every test and script reads streams with.
import { describe, expect, it } from "vitest";
import { collectJsonSse, collectSse, readSse, type SseEvent } from "../../scripts/lib/sse.ts";

const encoder = new TextEncoder();

function streamOf(chunks: Array<string | Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(typeof c === "string" ? encoder.encode(c) : c);
      controller.close();
    },
  });
}

async function parse(chunks: Array<string | Uint8Array>): Promise<Array<Omit<SseEvent, "receivedAt">>> {
  const out = [];
  for await (const { receivedAt: _, ...event } of readSse(streamOf(chunks))) out.push(event);
  return out;
}

describe("readSse", () => {
  it("parses event names, data and ids, defaulting the name to message", async () => {
    const events = await parse([
      ": a comment line\n",
      'event: delta\ndata: {"text":"he"}\n\n',
      "data:no-space\nid: 7\n\n",
      "event: done\ndata: first\ndata: second\n\n",
    ]);
    expect(events).toEqual([
      { event: "delta", data: '{"text":"he"}', id: undefined },
      { event: "message", data: "no-space", id: "7" },
      { event: "done", data: "first\nsecond", id: "7" },
    ]);
  });

  it("accepts CRLF, LF and lone CR line endings, including a CRLF split across chunks", async () => {
    const events = await parse(["data: a\r", "\ndata: b\r\n\r\n", "data: c\r\rdata: d\n\n"]);
    expect(events.map((e) => e.data)).toEqual(["a\nb", "c", "d"]);
  });

  it("reassembles lines and multi-byte characters split across chunks", async () => {
    const bytes = encoder.encode("event: delta\ndata: héllo ✓\n\n");
    const chunks = Array.from(bytes, (b) => new Uint8Array([b]));
    expect(await parse(chunks)).toEqual([{ event: "delta", data: "héllo ✓", id: undefined }]);
  });

  it("dispatches no event for a block without data and drops an unterminated last event", async () => {
    const events = await parse(["event: ping\n\n", "data: kept\n\n", "event: delta\ndata: cut off"]);
    expect(events).toEqual([{ event: "message", data: "kept", id: undefined }]);
  });

  it("yields each event as soon as its blank line arrives, before the rest of the stream exists", async () => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    let clock = 100;
    const events = readSse(body, { now: () => clock });
    controller.enqueue(encoder.encode("event: delta\ndata: one\n\n"));
    const first = await events.next();
    expect(first.value).toEqual({ event: "delta", data: "one", id: undefined, receivedAt: 100 });
    clock = 250;
    controller.enqueue(encoder.encode("event: done\ndata: two\n\n"));
    controller.close();
    const second = await events.next();
    expect(second.value).toEqual({ event: "done", data: "two", id: undefined, receivedAt: 250 });
    expect((await events.next()).done).toBe(true);
  });

  it("cancels the body when the reader stops early", async () => {
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(encoder.encode("data: one\n\ndata: two\n\n"));
      },
      cancel() {
        cancelled = true;
      },
    });
    for await (const event of readSse(body)) {
      expect(event.data).toBe("one");
      break;
    }
    expect(cancelled).toBe(true);
  });

  it("collects a whole response", async () => {
    const res = new Response(streamOf(["event: delta\ndata: x\n\n", "event: done\ndata: {}\n\n"]), {
      headers: { "content-type": "text/event-stream" },
    });
    const events = await collectSse(res);
    expect(events.map((e) => e.event)).toEqual(["delta", "done"]);
    expect(events[1]!.receivedAt).toBeGreaterThanOrEqual(events[0]!.receivedAt);
  });
});

describe("readSse options and JSON events", () => {
  it("throws on an unterminated last event when asked to", async () => {
    const read = async () => {
      for await (const _ of readSse(streamOf(["data: kept\n\n", "event: delta\ndata: cut off"]), {
        unterminated: "throw",
      }));
    };
    await expect(read()).rejects.toThrow(/stream ended inside an event/);
  });

  it("parses JSON data and keeps text that is not JSON", async () => {
    const res = new Response(streamOf(['event: delta\ndata: {"text":"hi"}\n\n', "data: plain\n\n"]));
    const events = await collectJsonSse(res);
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ["delta", { text: "hi" }],
      ["message", "plain"],
    ]);
  });
});
