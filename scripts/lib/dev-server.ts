// Starts this project's `wrangler dev` for the e2e suite, the namespace check and the bench: a
// free port on 127.0.0.1, a fresh local state directory with the D1 migrations applied, vars for
// the run passed through a temporary env file (the developer's .dev.vars is never read or
// touched), and a stop() that ends the whole process group. The server runs through launcher.ts,
// so it is also stopped when this process exits, is interrupted or dies.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { type AgentHost, startAgentHost, type WatchdogOptions } from "./agent-host.ts";
import { launch, removeScratchDir, runToEnd, scratchDir, waitForHttp } from "./launcher.ts";
import { offlineEnv, PROJECT_BIN, PROJECT_ROOT } from "./offline-env.ts";

export type DevServerOptions = {
  /** Vars and secrets for this run (e.g. AUTH_ISSUER, AUTH_JWKS); override wrangler.toml [vars]. */
  vars?: Record<string, string>;
  /** Wrangler configuration file for the migrations and the server (default: wrangler.toml). */
  config?: string;
  /** A named environment of the configuration (e.g. "production"), for the migrations and the server. */
  wranglerEnv?: string;
  /** Port to listen on; defaults to a free one chosen by the OS. */
  port?: number;
  /** Path that must answer 200 before the server counts as ready (default /healthz). */
  readyPath?: string;
  /** How long to wait for it (default 60 s). */
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
  /**
   * Runs after the migrations are applied and before the server starts, with the `--persist-to`
   * directory: the moment to write rows straight into the local D1 file (scripts/lib/scale-data.ts).
   */
  beforeStart?: (persistDir: string) => void | Promise<void>;
  /**
   * Also start the agent host (wrangler.host.toml) with its watchdog, and run the gateway with
   * DISPATCH_MODE=host (unless `vars` says otherwise): agents run in that second process
   * (scripts/lib/agent-host.ts). `true` takes the watchdog's defaults.
   */
  agentHost?: boolean | WatchdogOptions;
};

export type DevServer = {
  /** e.g. http://127.0.0.1:41234 */
  baseUrl: string;
  port: number;
  /** Process id (and process-group id) of `wrangler dev`. */
  pid: number;
  /** wrangler's DevTools inspector port (CPU profiles of the worker: scripts/profile-invoke.mjs). */
  inspectorPort: number;
  /** Temporary directory holding the local state; removed by stop(). */
  stateDir: string;
  /** The last few hundred lines wrangler printed. */
  logs(): string;
  /** The agent host and its watchdog, when `agentHost` was asked for. */
  agentHost?: AgentHost;
  /** Ends the whole process group (SIGTERM, then SIGKILL after the grace period) and removes the state. */
  stop(): Promise<void>;
};

export { PROJECT_ROOT };

/** Ports other engineers' dev servers use on this machine; never handed out here. */
const RESERVED_PORTS = { from: 8787, to: 8799 };

/** A free TCP port on 127.0.0.1, chosen by the OS (listen on port 0, read it, close). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolvePort, reject) => {
      const server = createServer();
      server.unref();
      server.once("error", reject);
      server.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
        const address = server.address();
        const chosen = typeof address === "object" && address ? address.port : 0;
        server.close(() => resolvePort(chosen));
      });
    });
    if (port > 0 && (port < RESERVED_PORTS.from || port > RESERVED_PORTS.to)) return port;
  }
  throw new Error("could not find a free port outside the reserved range");
}

/** 32 random bytes as base64: a fresh SECRETS_ENCRYPTION_KEY for one run. */
export function randomEncryptionKey(): string {
  return randomBytes(32).toString("base64");
}

/** dotenv syntax; single quotes keep JSON intact and stop `$` expansion. */
function envFileText(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([key, value]) => {
      if (!/^[A-Z_][A-Z0-9_]*$/.test(key)) throw new Error(`invalid var name: ${key}`);
      const text = String(value);
      if (text.includes("'") || text.includes("\n")) throw new Error(`var ${key} may not contain a quote or newline`);
      return `${key}='${text}'`;
    })
    .join("\n");
}

function wranglerEnv(stateDir: string) {
  return offlineEnv({
    WRANGLER_SEND_ERROR_REPORTS: "false",
    // Vars come only from our env file: not from process.env, not from .dev.vars.
    CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: "true",
    CLOUDFLARE_INCLUDE_PROCESS_ENV: "false",
    // Keep this server out of the machine-wide dev registry other engineers' servers use.
    WRANGLER_REGISTRY_PATH: join(stateDir, "registry"),
    WRANGLER_LOG_PATH: join(stateDir, "logs"),
    WRANGLER_HIDE_BANNER: "true",
    FORCE_COLOR: "0",
    NO_COLOR: "1",
  });
}

/** Starts `wrangler dev` and resolves once the ready path (GET /healthz) answers 200. */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  const stateDir = scratchDir("webhost-dev-");
  const persistDir = join(stateDir, "state");
  const envFile = join(stateDir, "run.env");
  const env = wranglerEnv(stateDir);
  const wrangler = join(PROJECT_BIN, "wrangler");
  const named = [
    ...(options.config ? ["--config", options.config] : []),
    ...(options.wranglerEnv ? ["--env", options.wranglerEnv] : []),
  ];
  const echo = options.echo ?? process.env.DEV_SERVER_ECHO === "1";
  const common = { env, echo, label: "wrangler", logFile: options.logFile, stopGraceMs: options.stopGraceMs };
  let server: ReturnType<typeof launch> | undefined;
  let host: AgentHost | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      try {
        await Promise.all([server?.stop(), host?.stop()]);
      } finally {
        removeScratchDir(stateDir);
      }
    })();
    return stopping;
  };

  let migrations = "";
  try {
    if (options.logFile) {
      mkdirSync(dirname(options.logFile), { recursive: true });
      writeFileSync(options.logFile, "");
    }
    const port = options.port ?? (await freePort());
    const inspectorPort = await freePort();
    const vars = {
      SECRETS_ENCRYPTION_KEY: randomEncryptionKey(),
      ...(options.agentHost ? { DISPATCH_MODE: "host" } : {}),
      ...options.vars,
    };
    writeFileSync(envFile, `${envFileText(vars)}\n`, { mode: 0o600 });

    migrations = await runToEnd(
      wrangler,
      ["d1", "migrations", "apply", "DB", "--local", ...named, "--persist-to", persistDir],
      { ...common, env: { ...env, CI: "true" } },
    );
    await options.beforeStart?.(persistDir);
    // The host first: the gateway's AGENT_HOST binding finds it through the shared dev registry.
    if (options.agentHost) {
      host = await startAgentHost({
        ...(options.agentHost === true ? {} : options.agentHost),
        env,
        persistDir: join(stateDir, "host-state"),
        echo,
        logFile: options.logFile ? `${options.logFile}.host` : undefined,
      });
    }

    server = launch(
      wrangler,
      [
        "dev",
        ...named,
        "--ip",
        "127.0.0.1",
        "--port",
        String(port),
        "--inspector-port",
        String(inspectorPort),
        "--persist-to",
        persistDir,
        "--env-file",
        envFile,
        "--show-interactive-dev-session=false",
        "--log-level",
        options.logLevel ?? "log",
        ...(options.extraArgs ?? []),
      ],
      common,
    );
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitForHttp(`${baseUrl}${options.readyPath ?? "/healthz"}`, {
      launched: server,
      timeoutMs: options.readyTimeoutMs ?? 60_000,
      accept: (status) => status === 200,
    });
    const launched = server;
    return {
      baseUrl,
      port,
      pid: launched.pid,
      inspectorPort,
      stateDir,
      logs: () => launched.output(),
      agentHost: host,
      stop,
    };
  } catch (err) {
    const logs = server?.output() ?? migrations;
    await stop();
    if (err instanceof Error && logs) err.message += `\n--- wrangler output ---\n${logs}`;
    throw err;
  }
}
