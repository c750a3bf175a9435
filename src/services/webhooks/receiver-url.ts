// Which receiver URLs the gateway will send to: https only, no credentials in the URL, and not a
// private, loopback or link-local destination (the egress door's address check,
// services/egress/policy.ts). Checked when an endpoint is created and again before every attempt.
// With ENVIRONMENT=development, http and private addresses are allowed, so local tests can run a
// receiver on 127.0.0.1.
import { isPrivateHost, normalizeHost } from "../egress/policy";

export const MAX_WEBHOOK_URL_CHARS = 2048;

/** Why the gateway will not send to `url`, or undefined. */
export function receiverUrlProblem(url: string, environment: string): string | undefined {
  if (url.length > MAX_WEBHOOK_URL_CHARS) return `must be at most ${MAX_WEBHOOK_URL_CHARS} characters`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "must be an absolute URL";
  }
  const development = environment === "development";
  if (parsed.protocol !== "https:" && !(development && parsed.protocol === "http:")) {
    return "must use https";
  }
  // A password in a URL we list back to the user and log would be a secret in plain sight.
  if (parsed.username !== "" || parsed.password !== "") return "must not contain credentials";
  if (parsed.hash !== "") return "must not contain a fragment";
  const host = normalizeHost(parsed.hostname);
  if (!development && isPrivateHost(host)) {
    return `${host} is a private, loopback or link-local address`;
  }
  return undefined;
}
