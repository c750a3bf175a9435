// The built-in agent webhost.systems deploys when a deploy request carries no moduleCode.
// It speaks invoke/v1 on POST (any path, so any invokePath works): JSON by default, SSE when the
// caller accepts text/event-stream (one `delta` per word, then `done`). It echoes the last user
// message and reports one signed telemetry event per invocation, off the response path.
// A GET on any path answers a small JSON status document.
import { answer, BadRequest, type InvokeRequest, parseInvokeRequest, splitIntoDeltas } from "./invoke";
import { sseEvent } from "./sse";
import { type InvocationSummary, reportInvocation, type TelemetryEnv } from "./telemetry";

/** Pause between streamed words, so a client sees the answer arrive word by word. */
const DELTA_INTERVAL_MS = 15;

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };

function json(data: unknown, status = 200): Response {
  return new Response(JSON.stringify(data), { status, headers: JSON_HEADERS });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function streamAnswer(request: InvokeRequest, finished: (summary: Omit<InvocationSummary, "startedAt">) => void) {
  const started = Date.now();
  const response = answer(request);
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const produce = async () => {
    try {
      const deltas = splitIntoDeltas(response.output.text);
      for (const [i, text] of deltas.entries()) {
        if (i > 0) await sleep(DELTA_INTERVAL_MS);
        await writer.write(sseEvent("delta", { text }));
      }
      await writer.write(sseEvent("done", response));
    } catch {
      // The client went away mid-stream.
      finished({ durationMs: Date.now() - started, status: "error", errorCode: "client_disconnected" });
      await writer.abort().catch(() => {});
      return;
    }
    // `done` is out: the invocation succeeded, even if the reader stops listening before close.
    finished({ durationMs: Date.now() - started, status: "ok", usage: response.usage });
    await writer.close().catch(() => {});
  };
  return { readable, produce };
}

export default {
  async fetch(req: Request, env: TelemetryEnv, ctx: ExecutionContext): Promise<Response> {
    if (req.method === "GET" || req.method === "HEAD") {
      return json({ ok: true, agent: "webhost-template", contract: "invoke/v1" });
    }
    if (req.method !== "POST") return json({ error: { code: "method_not_allowed", message: "use POST" } }, 405);

    const startedAt = Date.now();
    const traceId = req.headers.get("x-request-id") ?? undefined;
    let request: InvokeRequest;
    try {
      request = parseInvokeRequest(await req.json());
    } catch (err) {
      const message = err instanceof BadRequest ? err.message : "body must be JSON";
      return json({ error: { code: "invalid_request", message } }, 400);
    }

    if ((req.headers.get("accept") ?? "").includes("text/event-stream")) {
      let done: (summary: Omit<InvocationSummary, "startedAt">) => void = () => {};
      const summary = new Promise<Omit<InvocationSummary, "startedAt">>((resolve) => {
        done = resolve;
      });
      const { readable, produce } = streamAnswer(request, (s) => done(s));
      ctx.waitUntil(produce());
      ctx.waitUntil(summary.then((s) => reportInvocation(env, { ...s, traceId, startedAt })));
      return new Response(readable, {
        headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
      });
    }

    const response = answer(request);
    ctx.waitUntil(
      reportInvocation(env, {
        traceId,
        startedAt,
        durationMs: Date.now() - startedAt,
        status: "ok",
        usage: response.usage,
      }),
    );
    return json(response);
  },
};
