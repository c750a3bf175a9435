// First middleware of every request: assigns the request id, loads configuration, builds the
// request's services (compose.ts), and writes
// the one structured log line per request once the response is known (LOG_REQUESTS decides which).
import type { Context, MiddlewareHandler } from "hono";
import { type AppEnv, handleError } from "../app";
import { composeServices } from "../compose";
import { getConfig } from "../env";
import { newId } from "../lib/ids";
import { logInfo } from "../lib/logger";

export function requestContext(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = Date.now();
    const requestId = newId("request", started);
    c.set("requestId", requestId);
    try {
      try {
        const config = await getConfig(c.env);
        c.set("config", config);
        c.set("services", composeServices(c.env, c.executionCtx, config));
      } catch (err) {
        // Answered here (not thrown past us) so the log line below carries the real status.
        c.res = handleError(err, c);
        return;
      }
      await next();
    } finally {
      tagWithRequestId(c, requestId);
      const durationMs = Date.now() - started;
      if (shouldLogRequest(c.get("config")?.logRequests ?? "all", c.res.status, durationMs)) {
        logInfo("request", {
          requestId,
          method: c.req.method,
          route: c.req.routePath,
          path: c.req.path.slice(0, 200),
          status: c.res.status,
          durationMs,
          userId: c.get("userId"),
          environment: c.get("config")?.environment,
        });
      }
    }
  };
}

/**
 * Names the request on its answer. In place when the answer's headers may change (the answers the
 * gateway builds): Hono's `c.header` on a finished response copies the whole Response first, on
 * every request. An answer whose headers are immutable is copied, as before.
 */
function tagWithRequestId(c: Context<AppEnv>, requestId: string): void {
  try {
    c.res.headers.set("x-request-id", requestId);
  } catch {
    c.header("x-request-id", requestId);
  }
}

/** In `errors` mode a request taking at least this long to answer is logged whatever its status. */
export const SLOW_REQUEST_MS = 2000;

/**
 * The request line costs a console write per request, which a busy production gateway may not
 * want; `errors` keeps the lines an operator acts on (5xx, slow answers). Until the configuration
 * is known (it failed to parse) every request is logged.
 */
function shouldLogRequest(mode: "all" | "errors" | "none", status: number, durationMs: number): boolean {
  if (mode === "all") return true;
  if (mode === "none") return false;
  return status >= 500 || durationMs >= SLOW_REQUEST_MS;
}
