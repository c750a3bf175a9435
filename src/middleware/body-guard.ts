// Size and type limits on request bodies, applied before any handler reads them. Works with and
// without Content-Length: a chunked body is counted as it streams and cut off at the limit.
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
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
    const hasBody =
      c.req.header("content-length") !== undefined
        ? c.req.header("content-length") !== "0"
        : c.req.header("transfer-encoding") !== undefined;
    if (hasBody) {
      const type = c.req.header("content-type") ?? "";
      if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
        throw new ApiError("unsupported_media_type", "send the body as `Content-Type: application/json`");
      }
    } else if (c.req.header("content-length") === "0" && c.req.header("content-type") !== undefined) {
      // An empty body labelled JSON (curl -H 'content-type: application/json' with no -d) means
      // "no body", not malformed JSON: drop the label so optional bodies default and required ones
      // report their missing fields.
      const headers = new Headers(c.req.raw.headers);
      headers.delete("content-type");
      c.req.raw = new Request(c.req.raw, { headers });
    }
    const { maxBytes, tooLarge } =
      typeof limit === "number" ? { maxBytes: limit, tooLarge: tooLargeFor(limit) } : await limit(c);
    return bodyLimit({
      maxSize: maxBytes,
      onError: () => {
        throw tooLarge();
      },
    })(c, next);
  };
}
