// A run records each SSE event as its block: the event's lines without the `id:` line and without
// the blank line that ends it. The id is the event's place in the run, added when it is sent.

export function sseBlock(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}`;
}

/** The event as sent: `id: <seq>` first, then its lines, then the blank line. */
export function withId(seq: number, block: string): string {
  return `id: ${seq}\n${block}\n\n`;
}

/** The block of one relayed event (`…\n\n`), with any `id:` line the agent sent dropped: the run numbers events. */
export function toBlock(event: string): string {
  return event
    .replace(/\n+$/, "")
    .split("\n")
    .filter((line) => !/^id(:|$)/.test(line))
    .join("\n");
}

/** Name of an event block (`message` when it has no `event:` line). */
export function blockName(block: string): string {
  for (const line of block.split("\n")) if (line.startsWith("event:")) return line.slice(6).trim();
  return "message";
}

/** The event's data lines joined (the SSE `data` field), as text. */
export function blockDataText(block: string): string {
  return block
    .split("\n")
    .filter((l) => l.startsWith("data:"))
    .map((l) => l.slice(5).replace(/^ /, ""))
    .join("\n");
}

/** The event's data, parsed as JSON, or undefined. */
export function blockData(block: string): unknown {
  try {
    return JSON.parse(blockDataText(block));
  } catch {
    return undefined;
  }
}
