// The HTTP client every command uses. Every POST carries an Idempotency-Key, and a POST is retried
// only with the same key (so a retry never deploys or invokes twice): on a network error, a 5xx,
// a short 429, or 409 idempotency_in_progress. Problems become ApiError with title, detail and
// requestId.
import { randomUUID } from "node:crypto";
import { ApiError, CliError, UsageError } from "./output.mjs";

const VERSION = "0.1.0";
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_ATTEMPTS = 4;
/** Retry-After beyond this (e.g. a monthly quota) is a failure, not a wait. */
const MAX_RETRY_AFTER_S = 10;

export function newIdempotencyKey() {
  return `webhost-cli-${randomUUID()}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * @param {Response} res
 * @returns {Promise<never>}
 */
async function throwProblem(res) {
  const text = await res.text().catch(() => "");
  const requestId = res.headers.get("x-request-id") ?? undefined;
  let problem;
  try {
    problem = JSON.parse(text);
  } catch {}
  if (!problem || typeof problem !== "object") {
    problem = { status: res.status, title: `HTTP ${res.status} ${res.statusText}`.trim(), detail: text.slice(0, 500) };
  }
  throw new ApiError({ status: res.status, requestId, ...problem });
}

/**
 * @param {{ apiUrl: string, apiKey?: string, fetchImpl?: typeof fetch, onRetry?: (why: string) => void }} opts
 */
export function createClient({ apiUrl, apiKey, fetchImpl = fetch, onRetry = () => {} }) {
  /**
   * @param {string} method
   * @param {string} path
   * @param {{ body?: unknown, accept?: string, idempotencyKey?: string, raw?: boolean, timeoutMs?: number | null, auth?: boolean }} [opts]
   * @returns {Promise<Response>} a 2xx response (raw) — anything else throws
   */
  function requireCredential() {
    if (!apiKey) {
      throw new UsageError(
        `no credential for ${apiUrl}: run \`webhost login\` or set WEBHOST_API_KEY (an API key or a token)`,
      );
    }
  }

  async function send(method, path, opts = {}) {
    if (opts.auth !== false) requireCredential();
    const headers = { accept: opts.accept ?? "application/json", "user-agent": `webhost-cli/${VERSION}` };
    if (apiKey && opts.auth !== false) headers.authorization = `Bearer ${apiKey}`;
    let body;
    if (opts.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    const idempotencyKey = method === "POST" ? (opts.idempotencyKey ?? newIdempotencyKey()) : undefined;
    if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
    // GET, PUT and DELETE are idempotent by nature; POST is made so by its key.
    const timeoutMs = opts.timeoutMs === undefined ? REQUEST_TIMEOUT_MS : opts.timeoutMs;

    for (let attempt = 1; ; attempt++) {
      let res;
      try {
        res = await fetchImpl(`${apiUrl}${path}`, {
          method,
          headers,
          body,
          signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
        });
      } catch (err) {
        const cause = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(err);
        if (attempt < MAX_ATTEMPTS) {
          onRetry(`cannot reach ${apiUrl} (${cause}); retrying`);
          await sleep(250 * 2 ** attempt);
          continue;
        }
        throw new CliError(`cannot reach the API at ${apiUrl}: ${cause}`);
      }
      if (res.ok) return res;
      const retryAfter = Number(res.headers.get("retry-after"));
      const inProgress = res.status === 409 && (await peekCode(res)) === "idempotency_in_progress";
      const retryable =
        res.status >= 500 || inProgress || (res.status === 429 && retryAfter >= 0 && retryAfter <= MAX_RETRY_AFTER_S);
      if (retryable && attempt < MAX_ATTEMPTS && (retryAfter || 0) <= MAX_RETRY_AFTER_S) {
        const waitMs = retryAfter > 0 ? retryAfter * 1000 : 250 * 2 ** attempt;
        onRetry(`${method} ${path} answered ${res.status}; retrying in ${(waitMs / 1000).toFixed(1)} s`);
        await res.body?.cancel().catch(() => {});
        await sleep(waitMs);
        continue;
      }
      return throwProblem(res);
    }
  }

  /** Reads a 409's code without consuming the body a later throwProblem needs. */
  async function peekCode(res) {
    try {
      return (await res.clone().json()).code;
    } catch {
      return undefined;
    }
  }

  /** @returns {Promise<any>} the JSON body (null for 204) */
  async function json(method, path, opts = {}) {
    const res = await send(method, path, opts);
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  return {
    apiUrl,
    /** Fails fast (before bundling, say) when there is nothing to authenticate with. */
    requireCredential,
    send,
    json,
    get: (path) => json("GET", path),
    post: (path, body, opts = {}) => json("POST", path, { ...opts, body }),
    put: (path, body) => json("PUT", path, { body }),
    delete: (path) => json("DELETE", path),
  };
}

/**
 * An agent by id (`agt_…`) or by name.
 * @param {ReturnType<typeof createClient>} client
 * @param {string} ref
 * @returns {Promise<any | undefined>} the agent, or undefined when no agent has that name
 */
export async function findAgent(client, ref) {
  if (/^agt_[A-Za-z0-9]+$/.test(ref)) {
    try {
      return (await client.get(`/v1/agents/${ref}`)).agent;
    } catch (err) {
      if (err instanceof ApiError && err.problem.status === 404) return undefined;
      throw err;
    }
  }
  let cursor;
  do {
    const page = await client.get(`/v1/agents?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    const found = page.agents.find((a) => a.name === ref);
    if (found) return found;
    cursor = page.nextCursor;
  } while (cursor);
  return undefined;
}

/** Like findAgent, but a missing agent is an error. */
export async function requireAgent(client, ref) {
  const agent = await findAgent(client, ref);
  if (!agent) throw new CliError(`no agent ${JSON.stringify(ref)} (give an agent id agt_… or an agent name)`);
  return agent;
}
