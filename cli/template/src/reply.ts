// The agent's logic: replace this echo with yours (call a model, use a tool…).
import { countWords, type InvokeRequest, type InvokeResponse } from "./invoke";

export async function reply(request: InvokeRequest, _env: Record<string, unknown>): Promise<InvokeResponse> {
  const last = request.messages.findLast((m) => m.role === "user")?.content ?? "";
  const text = `you said: ${last}`;
  return {
    output: { text },
    ...(request.sessionId ? { sessionId: request.sessionId } : {}),
    usage: {
      inputTokens: request.messages.reduce((n, m) => n + countWords(m.content), 0),
      outputTokens: countWords(text),
    },
  };
}
