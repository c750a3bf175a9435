// invoke/v1 request and response schemas for validation and the OpenAPI document (docs/writing-an-agent.md).
import { z } from "@hono/zod-openapi";

export const InvokeMessageSchema = z
  .strictObject({
    role: z.enum(["user", "assistant", "system"]),
    content: z.string(),
  })
  .openapi("InvokeMessage");

export const InvokeRequestSchema = z
  .strictObject({
    messages: z
      .array(InvokeMessageSchema)
      .min(1, "messages must hold at least one message")
      .max(1000, "messages may hold at most 1000 messages"),
    sessionId: z.string().min(1).max(200).optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .openapi("InvokeRequest", {
    example: { messages: [{ role: "user", content: "Hello!" }], sessionId: "session-1" },
  });

export const InvokeResponseSchema = z
  .object({
    output: z.object({ text: z.string() }),
    sessionId: z.string().optional(),
    usage: z.object({ inputTokens: z.number().int().optional(), outputTokens: z.number().int().optional() }).optional(),
  })
  .openapi("InvokeResponse");

export const InvokeParams = z.object({
  agentId: z
    .string()
    .max(64)
    .openapi({ param: { name: "agentId", in: "path" }, example: "agt_01jd0000000000000000000000" }),
});
