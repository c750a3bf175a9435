// Types for dev-server.mjs, so TypeScript callers (the e2e suite) need no Node type package.

export interface DevServerOptions {
  /** Vars and secrets for this run (e.g. AUTH_ISSUER, AUTH_JWKS); override wrangler.toml [vars]. */
  vars?: Record<string, string>;
  /** Project directory holding wrangler.toml; defaults to this repository. */
  cwd?: string;
  /** Port to listen on; defaults to a free one chosen by the OS. */
  port?: number;
  /** How long to wait for GET /healthz to answer 200 (default 60 s). */
  readyTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL when stopping (default 5 s). */
  stopGraceMs?: number;
  /** Copy wrangler's output to stderr as it arrives (default: when DEV_SERVER_ECHO=1). */
  echo?: boolean;
  /** Also write wrangler's output to this file (created or truncated; kept after stop()). */
  logFile?: string;
  logLevel?: "debug" | "info" | "log" | "warn" | "error" | "none";
  /** More arguments for `wrangler dev`. */
  extraArgs?: string[];
}

export interface DevServer {
  /** e.g. http://127.0.0.1:41234 */
  baseUrl: string;
  port: number;
  /** Process id (and process-group id) of `wrangler dev`. */
  pid: number;
  /** Temporary directory holding the local state; removed by stop(). */
  stateDir: string;
  /** The last few hundred lines wrangler printed. */
  logs(): string;
  /** Ends the whole process group (SIGTERM, then SIGKILL after the grace period) and removes the state. */
  stop(): Promise<void>;
}

export const PROJECT_ROOT: string;
export function freePort(): Promise<number>;
export function randomEncryptionKey(): string;
export function startDevServer(options?: DevServerOptions): Promise<DevServer>;
