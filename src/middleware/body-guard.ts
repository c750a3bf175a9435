// Size and type limits on request bodies, applied before any handler reads them. Works with and
// without Content-Length: a chunked body is counted as it streams and cut off at the limit.
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "../app";
import { ApiError } from "../lib/errors";

export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024;

/** `limitFor` picks the byte limit from the request path (e.g. larger for deploy). */
export function bodyGuard(limitFor: (path: string) => number): MiddlewareHandler<AppEnv> {
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
    }
    const maxSize = limitFor(c.req.path);
    return bodyLimit({
      maxSize,
      onError: () => {
        throw new ApiError("payload_too_large", `the request body exceeds the limit of ${maxSize} bytes`, {
          extra: { limitBytes: maxSize },
        });
      },
    })(c, next);
  };
}
