// Size and type limits on request bodies, applied before any handler reads them. A declared
// Content-Length over the limit is refused without reading a byte; a body without one (chunked,
// HTTP/2) is counted as the handler reads it, and reading stops (and the rest of the body is
// cancelled, never drained) as soon as the count passes the limit.
import type { MiddlewareHandler } from "hono";
import type { AppContext, AppEnv } from "../app";
import { ApiError } from "../lib/errors";

export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024;

/** A fixed byte limit, or one that depends on the caller (the invoke routes' per-tier limit). */
export type BodyLimit = number | ((c: AppContext) => Promise<{ maxBytes: number; tooLarge: () => ApiError }>);

function tooLargeFor(maxBytes: number): () => ApiError {
  return () =>
    new ApiError("payload_too_large", `the request body exceeds the limit of ${maxBytes} bytes`, {
      extra: { limitBytes: maxBytes },
    });
}

export function bodyGuard(limit: BodyLimit): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const method = c.req.method;
    if (method === "GET" || method === "HEAD" || method === "DELETE" || method === "OPTIONS") return next();
    const declared = c.req.header("content-length");
    const hasBody = declared !== undefined ? declared !== "0" : c.req.header("transfer-encoding") !== undefined;
    if (hasBody) {
      const type = c.req.header("content-type") ?? "";
      if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
        throw new ApiError("unsupported_media_type", "send the body as `Content-Type: application/json`");
      }
    } else if (declared === "0" && c.req.header("content-type") !== undefined) {
      // An empty body labelled JSON (curl -H 'content-type: application/json' with no -d) means
      // "no body", not malformed JSON: drop the label so optional bodies default and required ones
      // report their missing fields.
      const headers = new Headers(c.req.raw.headers);
      headers.delete("content-type");
      c.req.raw = new Request(c.req.raw, { headers });
    }
    const source = c.req.raw.body;
    if (!source) return next();
    const { maxBytes, tooLarge } =
      typeof limit === "number" ? { maxBytes: limit, tooLarge: tooLargeFor(limit) } : await limit(c);
    if (declared !== undefined && Number(declared) > maxBytes) {
      await source.cancel().catch(() => {});
      throw tooLarge();
    }
    // A body framed by Content-Length is exactly that long: the runtime's HTTP parser delivers no
    // more than it declares. Only a body without it (chunked, HTTP/2) needs counting, which costs a
    // JavaScript stream on every read of the request.
    // (Both headers at once is a request-smuggling shape: it is counted.)
    if (declared !== undefined && /^\d+$/.test(declared) && c.req.header("transfer-encoding") === undefined) {
      return next();
    }
    const counted = countedBody(source, maxBytes, tooLarge);
    c.req.raw = new Request(c.req.raw, { body: counted.stream });
    await next();
    // The JSON validator reports any failed read as malformed JSON: when the count was passed,
    // the answer is the limit's problem whatever the reader made of the error.
    const refusal = counted.refusal();
    if (refusal && c.error !== refusal) throw refusal;
  };
}

/**
 * `source`, passed through one chunk per read. Once more than `maxBytes` have come through, the
 * stream errors with the limit's problem and `source` is cancelled, so nothing past the limit (plus
 * the one chunk that crossed it) is ever read.
 */
function countedBody(
  source: ReadableStream<Uint8Array>,
  maxBytes: number,
  tooLarge: () => ApiError,
): { stream: ReadableStream<Uint8Array>; refusal: () => ApiError | undefined } {
  const reader = source.getReader();
  let count = 0;
  let refusal: ApiError | undefined;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          return;
        }
        count += value.byteLength;
        if (count > maxBytes) {
          refusal = tooLarge();
          controller.error(refusal);
          await reader.cancel(refusal).catch(() => {});
          return;
        }
        controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    // Read from the source only when the handler asks: no read-ahead past what it consumed.
    { highWaterMark: 0 },
  );
  return { stream, refusal: () => refusal };
}
