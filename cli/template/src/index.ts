// The agent's entry point: the gateway POSTs each invocation to `invokePath` (agent.config.json)
// in the invoke/v1 shape and asks for JSON or, for a streamed invocation, server-sent events.
import { type InvokeRequest, type InvokeResponse, parseInvokeRequest } from "./invoke";
import { reply } from "./reply";
import { reportInvocation, type TelemetryEnv } from "./telemetry";

/** Your secrets arrive here too, as strings (webhost secrets set <agent> NAME). */
export type Env = TelemetryEnv & Record<string, unknown>;
type Ctx = { waitUntil(promise: Promise<unknown>): void };

const encoder = new TextEncoder();
const sse = (event: "delta" | "done", data: unknown) =>
  encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);

export default {
  async fetch(req: Request, env: Env, ctx: Ctx): Promise<Response> {
    if (req.method !== "POST") return Response.json({ ok: true, contract: "invoke/v1" });

    const startedAt = Date.now();
    let request: InvokeRequest;
    try {
      request = parseInvokeRequest(await req.json());
    } catch (err) {
      return Response.json(
        { error: { code: "invalid_request", message: String((err as Error).message) } },
        { status: 400 },
      );
    }
    const answer: InvokeResponse = await reply(request, env);
    const telemetry = () =>
      reportInvocation(env, {
        traceId: req.headers.get("x-request-id") ?? undefined,
        startedAt,
        durationMs: Date.now() - startedAt,
        usage: answer.usage,
      });

    if (!(req.headers.get("accept") ?? "").includes("text/event-stream")) {
      ctx.waitUntil(telemetry());
      return Response.json(answer);
    }
    // Streamed: one `delta` per word, then `done` with the whole answer.
    const words = answer.output.text.match(/\s*\S+\s*/g) ?? [answer.output.text];
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const text of words) controller.enqueue(sse("delta", { text }));
        controller.enqueue(sse("done", answer));
        controller.close();
        ctx.waitUntil(telemetry());
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
  },
};
