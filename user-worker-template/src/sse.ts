// Server-sent events framing: `event: <name>` + one `data:` line of JSON + a blank line.
const encoder = new TextEncoder();

export function sseEvent(name: "delta" | "done" | "error", data: unknown): Uint8Array {
  return encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}
