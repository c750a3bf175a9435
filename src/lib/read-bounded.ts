// Reading a body into text without holding more than a bound: bytes are counted chunk by chunk
// (whatever Content-Length says) and reading stops, cancelling the rest, at the bound.

/** One per isolate: decoding a whole buffer (no `stream` option) keeps no state between calls. */
const decoder = new TextDecoder();

/**
 * The body as UTF-8 text, at most `maxBytes` of it. `overflow: "truncate"` keeps the first
 * `maxBytes`; `"null"` (the default) answers null when the body is longer.
 */
export async function readBoundedText(
  stream: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  opts: { overflow?: "null" | "truncate" } = {},
): Promise<string | null> {
  if (stream === null) return "";
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      if (opts.overflow !== "truncate") return null;
      chunks.push(value.subarray(0, value.byteLength - (size - maxBytes)));
      size = maxBytes;
      break;
    }
    chunks.push(value);
  }
  // Most answers arrive in one chunk: decoded as it is, without a copy.
  if (chunks.length === 1) return decoder.decode(chunks[0]);
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.byteLength;
  }
  return decoder.decode(all);
}
