// How Workers for Platforms and the Cloudflare API report failures, turned into RuntimeErrors: an
// invocation's failure by its exception message, an upload's or a delete's by the API error's
// `retryable` flag.
import { CloudflareApiError } from "../../cloudflare/errors";
import { RuntimeError } from "../types";
import { loadFailureMessage } from "../user-script";

/** Cloudflare's "script validation failed" code, which also reports a failing top level. */
const CF_CODE_SCRIPT_INVALID = 10021;
const STARTUP_FAILURE = /^Uncaught |No such module|SyntaxError|CompileError/;

/**
 * Classifies what `DISPATCHER.get(...)` or the returned fetcher's `fetch()` threw. Workers for
 * Platforms reports these as exceptions whose messages are the only signal:
 * - a missing script: an Error whose message starts with "Worker not found" (documented);
 * - a custom limit hit: the user worker "immediately throws an exception" (documented); the
 *   messages seen are "Worker exceeded CPU time limit." and "Too many subrequests by single
 *   Worker invocation." (the CPU one is matched on "CPU time limit" as Cloudflare's own example
 *   does; the subrequest wording is not in Cloudflare's docs);
 * - anything else the user worker threw propagates as-is: an exception.
 */
export function classifyDispatchError(err: unknown, scriptName: string): RuntimeError {
  const message = err instanceof Error ? err.message : String(err);
  if (/needs to be run remotely/i.test(message)) {
    // miniflare (wrangler dev --env production) has no dispatch namespaces.
    return new RuntimeError("unavailable", "dispatch namespaces cannot run locally", false, {
      cause: err,
      fault: "configuration",
    });
  }
  if (/^Worker not found/i.test(message)) {
    return new RuntimeError("script_not_found", `script ${scriptName} is not in the dispatch namespace`, false, {
      cause: err,
    });
  }
  if (/CPU time limit|exceeded CPU|too many subrequests|subrequest limit|exceeded memory limit/i.test(message)) {
    return new RuntimeError("limit_exceeded", `the agent exceeded a resource limit: ${message.slice(0, 200)}`, false, {
      cause: err,
    });
  }
  if (PLATFORM_FAILURE.test(message)) {
    // workerd's own failures ("internal error; reference = …", a lost connection, overload) are
    // not the agent's exceptions; their text is for the operator.
    return new RuntimeError("unavailable", `the runtime failed: ${message.slice(0, 200)}`, false, { cause: err });
  }
  return new RuntimeError("exception", `the agent threw an exception: ${message.slice(0, 200)}`, false, {
    cause: err,
  });
}

/** Messages of failures of the runtime itself, which the dispatcher rethrows like the agent's own. */
const PLATFORM_FAILURE = /^internal error; reference|Network connection lost|overloaded/i;

/**
 * Cloudflare's codes for an upload it rejects because of the script itself: 10021 (validation:
 * a syntax error, a throw at startup, a startup CPU limit) and 10027 (the script is too large).
 */
export const CF_SCRIPT_CODES = new Set([10021, 10027]);

/**
 * A Cloudflare API failure as a RuntimeError; anything else passes through unchanged. Retryable
 * failures (429, 5xx, network, timeout) are the platform's and leave the deployment to be retried;
 * a rejection of the script itself is the agent's (the message is Cloudflare's, about its code);
 * 401, 403 and 404 (a bad token, a wrong account id, a missing namespace: the upload creates the
 * script, so a 404 is never about it) are a misconfiguration; any other 4xx is the platform's.
 */
export function runtimeErrorFromApi(err: unknown): unknown {
  if (!(err instanceof CloudflareApiError)) return err;
  if (err.retryable) return new RuntimeError("unavailable", err.message, true, { cause: err });
  // A bundle whose top level fails Cloudflare's startup check reads as the loader's message.
  const startup = err.errors.find((e) => e.code === CF_CODE_SCRIPT_INVALID && STARTUP_FAILURE.test(e.message));
  if (startup) {
    return new RuntimeError("load_failed", loadFailureMessage(startup.message), false, { cause: err, fault: "agent" });
  }
  if (err.codes.some((c) => CF_SCRIPT_CODES.has(c))) {
    return new RuntimeError("load_failed", err.message, false, { cause: err, fault: "agent" });
  }
  const fault = err.status === 401 || err.status === 403 || err.status === 404 ? "configuration" : "platform";
  return new RuntimeError("load_failed", err.message, false, { cause: err, fault });
}
