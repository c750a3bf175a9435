// The one error type the Cloudflare API module throws. It carries what a caller needs to decide
// (retry or give up) and what an operator needs to read (status, Cloudflare's codes and messages)
// and nothing else: never the request, its headers or the token.
import type { CloudflareMessage } from "./types";

export type CloudflareFailureKind = "http" | "network" | "timeout" | "invalid_response";

export class CloudflareApiError extends Error {
  override name = "CloudflareApiError";
  /** HTTP status of the answer; null when no answer arrived (network error, timeout). */
  readonly status: number | null;
  /** Cloudflare's numeric error codes from the envelope (e.g. 10007 "not found"). */
  readonly codes: number[];
  readonly errors: CloudflareMessage[];
  readonly kind: CloudflareFailureKind;
  /** True when trying the same call again later can help (429, 5xx, network, timeout). */
  readonly retryable: boolean;
  /** What was being done, e.g. "upload script webhost-dep-…"; used in messages. */
  readonly operation: string;

  constructor(input: {
    operation: string;
    kind: CloudflareFailureKind;
    status: number | null;
    errors?: CloudflareMessage[];
    detail?: string;
    cause?: unknown;
  }) {
    const errors = input.errors ?? [];
    const described = errors.length
      ? errors.map((e) => `${e.message} (code ${e.code})`).join("; ")
      : (input.detail ?? "no detail");
    const where = input.status === null ? input.kind : `HTTP ${input.status}`;
    super(`Cloudflare API: ${input.operation} failed: ${where}: ${described}`.slice(0, 1000), {
      cause: input.cause,
    });
    this.operation = input.operation;
    this.kind = input.kind;
    this.status = input.status;
    this.errors = errors;
    this.codes = errors.map((e) => e.code);
    this.retryable = isRetryable(input.kind, input.status);
  }
}

/** 408, 429 and 5xx answers, network failures and timeouts can succeed later; other 4xx cannot. */
export function isRetryable(kind: CloudflareFailureKind, status: number | null): boolean {
  if (kind === "network" || kind === "timeout") return true;
  if (status === null) return false;
  return status === 408 || status === 429 || status >= 500;
}

/** Cloudflare's "Script or workers.dev subdomain not found" / "Resource not found". */
export const CF_CODE_NOT_FOUND = 10007;

/**
 * The script (or other named resource) does not exist. A 404 with another code (e.g. 7003, "could
 * not route": a wrong account id) is not this: treating it as "already gone" would hide a
 * misconfiguration.
 */
export function isNotFound(err: unknown): boolean {
  if (!(err instanceof CloudflareApiError)) return false;
  return err.codes.includes(CF_CODE_NOT_FOUND) || (err.status === 404 && err.codes.length === 0);
}
