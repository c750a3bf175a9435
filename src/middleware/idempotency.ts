// Idempotency-Key on POST routes (registered by userRoute after authentication, authorization and
// the body limit). A request without the header runs as always. With it: the body's SHA-256 is
// taken, the key is claimed for (principal, route), and then
//   - a first request runs; its final answer (2xx, 4xx except 429) is stored for 24 h, and a 5xx,
//     a 429 or an answer over IDEMPOTENCY_MAX_BODY_BYTES releases the claim so a retry runs again;
//   - a repeat with the same body replays the stored answer with `Idempotent-Replayed: true`;
//   - a repeat with another body is 422 idempotency_key_reused;
//   - a repeat while the first still runs is 409 idempotency_in_progress with Retry-After.
// A streamed answer (text/event-stream) is passed to the client untouched while a second branch
// of it is read for the final `done` event; that event's data (the invoke/v1 answer) is stored as
// JSON, so a repeat replays it as a JSON answer. A stream that ends in `error` or without `done`
// releases the claim.
import type { MiddlewareHandler } from "hono";
import type { AppContext, AppEnv } from "../app";
import { principalKey } from "../auth/principal";
import { sha256Hex } from "../crypto/encoding";
import { ApiError } from "../lib/errors";
import { describeError, logWarn } from "../lib/logger";
import { readBoundedText } from "../lib/read-bounded";
import {
  claimIdempotencyKey,
  completeIdempotencyKey,
  IDEMPOTENCY_KEY_MAX_CHARS,
  IDEMPOTENCY_MAX_BODY_BYTES,
  type IdempotencyScope,
  REPLAYED_HEADERS,
  releaseIdempotencyKey,
} from "../services/idempotency/idempotency";
import { blockDataText, blockName } from "../services/runs/sse-blocks";

const KEY_PATTERN = /^[\x21-\x7e]+$/;

export function idempotency(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const key = c.req.header("idempotency-key");
    if (key === undefined) return next();
    if (key.length === 0 || key.length > IDEMPOTENCY_KEY_MAX_CHARS || !KEY_PATTERN.test(key)) {
      throw new ApiError("validation_failed", "the Idempotency-Key header is invalid", {
        errors: [
          {
            location: "header.idempotency-key",
            message: `1 to ${IDEMPOTENCY_KEY_MAX_CHARS} visible ASCII characters`,
          },
        ],
      });
    }
    const { db } = c.var.services;
    const fingerprint = await sha256Hex(new Uint8Array(await c.req.arrayBuffer()));
    const scope: IdempotencyScope = {
      principal: principalKey(c.var.principal),
      route: `${c.req.method} ${c.req.path}`,
      key,
    };
    const outcome = await claimIdempotencyKey(db, scope, fingerprint);
    if (outcome.kind === "reused") {
      throw new ApiError(
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request body; use a new key for a new request",
      );
    }
    if (outcome.kind === "in_progress") {
      throw new ApiError("idempotency_in_progress", "the first request with this Idempotency-Key is still running", {
        headers: { "retry-after": String(outcome.retryAfterSeconds) },
      });
    }
    if (outcome.kind === "replay") {
      const headers = new Headers(outcome.headers);
      headers.set("idempotent-replayed", "true");
      c.res = new Response(outcome.body, { status: outcome.status, headers });
      return;
    }
    const release = () =>
      releaseIdempotencyKey(db, scope, outcome.claimId).catch((err: unknown) =>
        logWarn("idempotency_release_failed", { requestId: c.var.requestId, error: describeError(err) }),
      );
    try {
      await next();
    } catch (err) {
      await release();
      throw err;
    }
    await settle(c, scope, outcome.claimId, release);
  };
}

function isFinal(status: number): boolean {
  return status >= 200 && status < 500 && status !== 429;
}

function keptHeaders(res: Response, contentType?: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of REPLAYED_HEADERS) {
    const value = res.headers.get(name);
    if (value !== null) out[name] = value;
  }
  if (contentType) out["content-type"] = contentType;
  return out;
}

async function settle(c: AppContext, scope: IdempotencyScope, claimId: string, release: () => Promise<void>) {
  const { db, waitUntil } = c.var.services;
  const res = c.res;
  if (!isFinal(res.status)) return release();
  const complete = (status: number, headers: Record<string, string>, body: string | null) =>
    completeIdempotencyKey(db, scope, claimId, { status, headers, body }).catch((err: unknown) =>
      logWarn("idempotency_complete_failed", { requestId: c.var.requestId, error: describeError(err) }),
    );
  if (res.body === null || res.status === 204 || res.status === 205)
    return complete(res.status, keptHeaders(res), null);
  if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    const [toClient, toCapture] = res.body.tee();
    c.res = new Response(toClient, res);
    waitUntil(
      finalDoneEvent(toCapture).then((done) =>
        done === null ? release() : complete(res.status, keptHeaders(res, "application/json"), done),
      ),
    );
    return;
  }
  const declared = Number(res.headers.get("content-length") ?? Number.NaN);
  if (declared > IDEMPOTENCY_MAX_BODY_BYTES) return release();
  const body = await readBoundedText(res.clone().body, IDEMPOTENCY_MAX_BODY_BYTES);
  if (body === null) return release();
  return complete(res.status, keptHeaders(res), body);
}

/**
 * Reads an SSE stream to its end and returns the data of its `done` event, or null when the
 * stream ends otherwise (an `error` event, no `done`, a read failure, an event over the limit).
 * Holds at most one unfinished event, so memory stays bounded whatever the stream's length.
 */
async function finalDoneEvent(stream: ReadableStream<Uint8Array>): Promise<string | null> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let done: string | null = null;
  try {
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      pending += decoder.decode(chunk.value, { stream: true }).replaceAll("\r\n", "\n");
      let end = pending.indexOf("\n\n");
      while (end !== -1) {
        const block = pending.slice(0, end);
        pending = pending.slice(end + 2);
        const name = blockName(block);
        if (name === "done") done = blockDataText(block);
        if (name === "error") done = null;
        end = pending.indexOf("\n\n");
      }
      if (pending.length > IDEMPOTENCY_MAX_BODY_BYTES) {
        await reader.cancel();
        return null;
      }
    }
  } catch {
    return null;
  }
  return done !== null && done.length <= IDEMPOTENCY_MAX_BODY_BYTES ? done : null;
}
