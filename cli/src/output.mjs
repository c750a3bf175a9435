// How every command talks to its caller: the result on stdout (one JSON document with --json,
// readable text otherwise), progress and errors on stderr, and the exit code (0 ok, 1 failure,
// 2 usage error).

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake in how the command was called (exit 2). */
export class UsageError extends Error {
  name = "UsageError";
}

/** A failure that is not the API's answer (exit 1): a bad agent.config.json, a bundle error, a timeout. */
export class CliError extends Error {
  name = "CliError";
  /**
   * @param {string} message
   * @param {Record<string, unknown>} [extra] fields added to the --json error document
   */
  constructor(message, extra = {}) {
    super(message);
    this.extra = extra;
  }
}

/** The API answered with a problem (RFC 9457) or an unexpected status. */
export class ApiError extends Error {
  name = "ApiError";
  /** @param {{ status: number, code?: string, title?: string, detail?: string, requestId?: string } & Record<string, unknown>} problem */
  constructor(problem) {
    super(`${problem.title ?? `HTTP ${problem.status}`}${problem.detail ? `: ${problem.detail}` : ""}`);
    this.problem = problem;
  }
}

/**
 * @typedef {{ json: boolean, progress(text: string): void, result(doc: unknown, human?: string | (() => string)): void, write(text: string): void }} Output
 */

/**
 * @param {{ json?: boolean, stdout?: { write(s: string): unknown }, stderr?: { write(s: string): unknown } }} opts
 * @returns {Output}
 */
export function createOutput({ json = false, stdout = process.stdout, stderr = process.stderr } = {}) {
  return {
    json,
    progress(text) {
      stderr.write(`${text}\n`);
    },
    result(doc, human) {
      if (json) {
        stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
        return;
      }
      const text = typeof human === "function" ? human() : (human ?? JSON.stringify(doc, null, 2));
      if (text) stdout.write(text.endsWith("\n") ? text : `${text}\n`);
    },
    write(text) {
      stdout.write(text);
    },
  };
}

/**
 * Prints an error the way every command does and returns the exit code for it.
 * @param {unknown} err
 * @param {Output} out
 * @param {{ write(s: string): unknown }} [stderr]
 */
export function reportError(err, out, stderr = process.stderr) {
  if (err instanceof ApiError) {
    const p = err.problem;
    const lines = [`error: ${p.title ?? `HTTP ${p.status}`}`];
    if (p.detail) lines.push(`  ${p.detail}`);
    if (Array.isArray(p.errors)) {
      for (const e of p.errors) lines.push(`  - ${e.location ?? ""}: ${e.message ?? ""}`);
    }
    const meta = [`status ${p.status}`, p.code && `code ${p.code}`, p.requestId && `requestId ${p.requestId}`];
    lines.push(`  (${meta.filter(Boolean).join(", ")})`);
    stderr.write(`${lines.join("\n")}\n`);
    if (out.json) out.write(`${JSON.stringify({ error: p }, null, 2)}\n`);
    return EXIT_FAILURE;
  }
  const usage = err instanceof UsageError;
  const message = err instanceof Error ? err.message : String(err);
  stderr.write(`error: ${message}\n`);
  if (out.json) {
    const extra = err instanceof CliError ? err.extra : {};
    out.write(
      `${JSON.stringify({ error: { title: usage ? "Usage error" : "Failed", detail: message, ...extra } }, null, 2)}\n`,
    );
  }
  return usage ? EXIT_USAGE : EXIT_FAILURE;
}
