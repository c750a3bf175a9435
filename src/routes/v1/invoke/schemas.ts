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
    sessionId: z.string().min(1).max(200).optional().openapi({
      description:
        "Makes the call a turn of this session: every turn goes to the deployment that served its first, one turn at a time (docs/api.md, Sessions)",
    }),
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

// The events of /v1/invoke/{agentId}/stream, one schema per event type: `event` is the SSE event
// name, `data` the event's JSON data. The OpenAPI document links them to the stream's media type
// with `x-itemSchema` (OpenAPI 3.2's `itemSchema`, under an extension name while the document is
// 3.1), and a generated client gets them as the `InvokeStreamEvent` union.
export const InvokeStreamDeltaSchema = z
  .object({ event: z.literal("delta"), data: z.object({ text: z.string() }) })
  .openapi("InvokeStreamDelta", { description: "A piece of the answer's text, in order" });

export const InvokeStreamDoneSchema = z
  .object({ event: z.literal("done"), data: InvokeResponseSchema })
  .openapi("InvokeStreamDone", { description: "The full invoke/v1 response; the stream ends" });

export const InvokeStreamErrorSchema = z
  .object({
    event: z.literal("error"),
    data: z
      .object({
        code: z.string().openapi({
          description:
            "The gateway's own: upstream_timeout, upstream_exception, upstream_invalid_response, stream_time_limit, upstream_error; an agent's `error` event is relayed as the agent sent it",
        }),
        message: z.string(),
      })
      .catchall(z.unknown()),
  })
  .openapi("InvokeStreamError", { description: "The stream failed after it started; the stream ends" });

export const InvokeStreamEventSchema = z
  .discriminatedUnion("event", [InvokeStreamDeltaSchema, InvokeStreamDoneSchema, InvokeStreamErrorSchema])
  .openapi("InvokeStreamEvent", {
    description:
      "One server-sent event of an invoke stream (`event:` line = `event`, `data:` line = JSON of `data`): `delta`…, then exactly one `done` or `error`",
  });

export const InvokeParams = z.object({
  agentId: z
    .string()
    .max(64)
    .openapi({ param: { name: "agentId", in: "path" }, example: "agt_01jd0000000000000000000000" }),
});
