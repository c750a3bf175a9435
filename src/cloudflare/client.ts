// The only code that talks to Cloudflare's REST API. It adds the bearer token, applies a timeout,
// parses the v4 envelope `{ success, errors, messages, result }` and turns every failure into a
// `CloudflareApiError` with a `retryable` flag; callers never see a raw Response. It logs nothing
// (the token must never reach a log, and callers log the classified error once).
import { z } from "zod";
import type { CloudflareApiConfig } from "./config";
import { CloudflareApiError } from "./errors";
import type { CloudflareMessage } from "./types";

export type FetchLike = (request: Request) => Promise<Response>;

export type CloudflareRequest = {
  /** Human-readable name of the call, used in error messages (never holds secret material). */
  operation: string;
  method: "GET" | "PUT" | "POST" | "PATCH" | "DELETE";
  /** Path below the base URL, starting with "/"; segments must already be encoded. */
  path: string;
  query?: Record<string, string>;
  body?: BodyInit;
};

const messageSchema = z.object({ code: z.number(), message: z.string() }).loose();

const envelopeSchema = z.object({
  success: z.boolean(),
  errors: z.array(messageSchema).default([]),
  messages: z.array(messageSchema).default([]),
  result: z.unknown().optional(),
});

export class CloudflareClient {
  readonly accountId: string;
  readonly #config: CloudflareApiConfig;
  readonly #fetch: FetchLike;

  /** `fetch` is injectable so tests can put a fake Cloudflare API behind the same code path. */
  constructor(config: CloudflareApiConfig, deps: { fetch?: FetchLike } = {}) {
    this.#config = config;
    this.accountId = config.accountId;
    this.#fetch = deps.fetch ?? ((req) => fetch(req));
  }

  /** `/accounts/{account_id}` followed by `rest`. */
  accountPath(rest: string): string {
    return `/accounts/${encodeURIComponent(this.#config.accountId)}${rest}`;
  }

  /** Sends the request and returns the envelope's `result` (null when absent). */
  async request(req: CloudflareRequest): Promise<unknown> {
    const url = new URL(`${this.#config.baseUrl}${req.path}`);
    for (const [k, v] of Object.entries(req.query ?? {})) url.searchParams.set(k, v);

    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#config.timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(
        new Request(url, {
          method: req.method,
          headers: { authorization: `Bearer ${this.#config.apiToken}`, accept: "application/json" },
          body: req.body,
          signal: controller.signal,
        }),
      );
      // The body is read under the same deadline: a stalled answer is a timeout too.
      text = await response.text();
    } catch (err) {
      const timedOut = controller.signal.aborted;
      throw new CloudflareApiError({
        operation: req.operation,
        kind: timedOut ? "timeout" : "network",
        status: null,
        detail: timedOut ? `no answer within ${this.#config.timeoutMs} ms` : describeFetchError(err),
        cause: timedOut ? undefined : err,
      });
    } finally {
      clearTimeout(timer);
    }

    // "Delete Worker" is documented as having no response body on success.
    if (response.ok && text.trim() === "") return null;
    const envelope = parseEnvelope(text);
    if (!envelope) {
      const ok = response.ok;
      throw new CloudflareApiError({
        operation: req.operation,
        kind: ok ? "invalid_response" : "http",
        status: response.status,
        detail: `answer is not a Cloudflare API envelope (content-type ${response.headers.get("content-type") ?? "none"})`,
      });
    }
    if (!response.ok || !envelope.success) {
      throw new CloudflareApiError({
        operation: req.operation,
        kind: "http",
        status: response.status,
        errors: envelope.errors.length ? envelope.errors : undefined,
        detail: envelope.success ? "success=true on an error status" : "success=false without errors",
      });
    }
    return envelope.result ?? null;
  }
}

function parseEnvelope(
  text: string,
): { success: boolean; errors: CloudflareMessage[]; messages: CloudflareMessage[]; result?: unknown } | null {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = envelopeSchema.safeParse(json);
  return parsed.success ? parsed.data : null;
}

function describeFetchError(err: unknown): string {
  // A fetch failure's message names the host at most; the Authorization header is never in it.
  return err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 300) : "fetch failed";
}
