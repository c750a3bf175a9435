// Edge cases of the SSE relay at the byte level: line endings split across chunks, and the bound
// on one unfinished event (an agent must not be able to grow the gateway's memory without limit).
import { describe, expect, it } from "vitest";
import { MAX_SSE_EVENT_CHARS, type RelayEnd, relaySse } from "../src/services/invoke/sse";
import { waitFor } from "./helpers/wait";

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(enc.encode(c));
      controller.close();
    },
  });
}

async function relay(chunks: string[]) {
  let ended: RelayEnd | undefined;
  const out = relaySse(streamOf(chunks), { idleTimeoutMs: 1000, maxDurationMs: 60_000, onEnd: (r) => (ended = r) });
  const text = await new Response(out).text();
  return { text, ended };
}

describe("SSE relay", () => {
  it("keeps event boundaries when a CRLF pair is split across chunks", async () => {
    const { text, ended } = await relay([
      'event: delta\r\ndata: {"text":"a"}\r\n\r',
      '\nevent: done\r\ndata: {"output":{"text":"a"}}\r\n\r',
      "\n",
    ]);
    expect(text).toBe('event: delta\ndata: {"text":"a"}\n\nevent: done\ndata: {"output":{"text":"a"}}\n\n');
    expect(ended?.ok).toBe(true);
  });

  it("accepts bare CR line endings", async () => {
    const { text, ended } = await relay(['event: done\rdata: {"output":{"text":"x"}}\r\r']);
    expect(text).toBe('event: done\ndata: {"output":{"text":"x"}}\n\n');
    expect(ended?.ok).toBe(true);
  });

  it("ends with an error event when one event grows past the limit", async () => {
    const big = "x".repeat(64 * 1024);
    const chunks = ['event: delta\ndata: {"text":"ok"}\n\n', "data: "];
    for (let sent = 0; sent <= MAX_SSE_EVENT_CHARS; sent += big.length) chunks.push(big);
    const { text, ended } = await relay(chunks);
    expect(text.startsWith('event: delta\ndata: {"text":"ok"}\n\nevent: error\n')).toBe(true);
    expect(text).toContain("upstream_invalid_response");
    expect(text.length).toBeLessThan(1000);
    expect(ended).toMatchObject({ ok: false, errorCode: "upstream_invalid_response" });
  });

  it("ends at maxDurationMs even while the client is not reading, and cancels the agent's stream", async () => {
    const enc = new TextEncoder();
    let cancelled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull: async (c) => {
        await new Promise((r) => setTimeout(r, 20));
        c.enqueue(enc.encode('event: delta\ndata: {"text":"tick"}\n\n'));
      },
      cancel: () => {
        cancelled = true;
      },
    });
    let ended: RelayEnd | undefined;
    const out = relaySse(endless, { idleTimeoutMs: 1000, maxDurationMs: 150, onEnd: (r) => (ended = r) });
    const reader = out.getReader();
    expect((await reader.read()).done).toBe(false);
    // The client stops reading: no pull is pending when the deadline passes.
    await waitFor(async () => ended, { what: "the stream time limit" });
    expect(ended).toMatchObject({ ok: false, errorCode: "stream_time_limit", cutOff: true });
    expect(cancelled).toBe(true);
    let rest = "";
    const dec = new TextDecoder();
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += dec.decode(r.value);
    expect(rest).toMatch(/^event: error\ndata: \{"code":"stream_time_limit"/);
  });
});
