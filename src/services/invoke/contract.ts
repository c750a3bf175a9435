// invoke/v1 (docs/writing-an-agent.md) as the gateway checks it. Requests are strict (validated at the route);
// an agent's answer is checked loosely: the required fields with the right types, extras allowed.
import { z } from "zod";

export type InvokeMessage = { role: "user" | "assistant" | "system"; content: string };
export type InvokeRequest = { messages: InvokeMessage[]; sessionId?: string; metadata?: Record<string, unknown> };

export const AgentResponseSchema = z.looseObject({
  output: z.looseObject({ text: z.string() }),
  sessionId: z.string().optional(),
  usage: z
    .looseObject({
      inputTokens: z.number().int().nonnegative().optional(),
      outputTokens: z.number().int().nonnegative().optional(),
    })
    .optional(),
});

export type AgentResponse = z.infer<typeof AgentResponseSchema>;
