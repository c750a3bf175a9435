// The invoke/v1 contract as this agent speaks it, and the agent's "model": an echo of the last
// user message, with token counts estimated by word count.

export type InvokeMessage = { role: "user" | "assistant" | "system"; content: string };
export type InvokeRequest = { messages: InvokeMessage[]; sessionId?: string; metadata?: Record<string, unknown> };
export type InvokeUsage = { inputTokens: number; outputTokens: number };
export type InvokeResponse = { output: { text: string }; sessionId?: string; usage: InvokeUsage };

export class BadRequest extends Error {}

const ROLES = new Set(["user", "assistant", "system"]);

/** Checks the shape the gateway already validated; a direct caller gets a clear 400 instead. */
export function parseInvokeRequest(value: unknown): InvokeRequest {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new BadRequest("body must be an object");
  const { messages, sessionId, metadata } = value as Record<string, unknown>;
  if (!Array.isArray(messages) || messages.length === 0) throw new BadRequest("messages must be a non-empty array");
  for (const m of messages) {
    if (typeof m !== "object" || m === null) throw new BadRequest("each message must be an object");
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string" || !ROLES.has(role))
      throw new BadRequest("message role must be user, assistant or system");
    if (typeof content !== "string") throw new BadRequest("message content must be a string");
  }
  if (sessionId !== undefined && typeof sessionId !== "string") throw new BadRequest("sessionId must be a string");
  return {
    messages: messages as InvokeMessage[],
    sessionId: sessionId as string | undefined,
    metadata: metadata as Record<string, unknown> | undefined,
  };
}

/** Rough token estimate: whitespace-separated words. */
export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === "" ? 0 : trimmed.split(/\s+/).length;
}

export function answer(request: InvokeRequest): InvokeResponse {
  const lastUser = [...request.messages].reverse().find((m) => m.role === "user");
  const text = lastUser?.content ?? "";
  const inputTokens = request.messages.reduce((sum, m) => sum + countWords(m.content), 0);
  return {
    output: { text },
    ...(request.sessionId !== undefined ? { sessionId: request.sessionId } : {}),
    usage: { inputTokens, outputTokens: countWords(text) },
  };
}

/**
 * The pieces a streamed answer is sent in: one per word with the whitespace after it, so that
 * joining them gives back the text exactly. Never empty (an empty answer is one empty piece).
 */
export function splitIntoDeltas(text: string): string[] {
  return text.match(/\s*\S+\s*/g) ?? [text];
}
