// The invoke/v1 contract: what the gateway sends and what the agent answers.
export type InvokeMessage = { role: "user" | "assistant" | "system"; content: string };
export type InvokeRequest = { messages: InvokeMessage[]; sessionId?: string; metadata?: Record<string, unknown> };
export type InvokeUsage = { inputTokens: number; outputTokens: number };
export type InvokeResponse = { output: { text: string }; sessionId?: string; usage?: InvokeUsage };

/** The gateway has already checked the body; this gives a direct caller a clear error. */
export function parseInvokeRequest(value: unknown): InvokeRequest {
  const body = value as Partial<InvokeRequest> | null;
  if (!body || !Array.isArray(body.messages) || body.messages.length === 0) {
    throw new Error("messages must be a non-empty array");
  }
  for (const m of body.messages) {
    if (!m || typeof m.content !== "string" || !["user", "assistant", "system"].includes(m.role)) {
      throw new Error("each message needs a role (user, assistant or system) and a string content");
    }
  }
  return body as InvokeRequest;
}

/** A rough token count: whitespace-separated words. */
export const countWords = (text: string) => (text.trim() ? text.trim().split(/\s+/).length : 0);
