// Starts this project's `wrangler dev` as a child process for the e2e suite and benchmarks: a
// free port on 127.0.0.1, a fresh local state directory with the D1 migrations applied, vars for
// the run passed through a temporary env file (the developer's .dev.vars is never read or
// touched), and a stop() that ends the whole process group. The server is also stopped when this
// process exits, is interrupted or dies, so no workerd is ever left behind; processes are only
// ever signalled by process-group id, never by name.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Ports other engineers' dev servers use on this machine; never handed out here. */
const RESERVED_PORTS = { from: 8787, to: 8799 };
const LOG_LINES_KEPT = 400;

/** A free TCP port on 127.0.0.1, chosen by the OS (listen on port 0, read it, close). */
export async function freePort() {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise((resolvePort, reject) => {
      const server = createServer();
      server.unref();
      server.once("error", reject);
      server.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
        const { port: chosen } = server.address();
        server.close(() => resolvePort(chosen));
      });
    });
    if (port < RESERVED_PORTS.from || port > RESERVED_PORTS.to) return port;
  }
  throw new Error("could not find a free port outside the reserved range");
}

/** 32 random bytes as base64: a fresh SECRETS_ENCRYPTION_KEY for one run. */
export function randomEncryptionKey() {
  return randomBytes(32).toString("base64");
}

function wranglerBin(root) {
  return join(root, "node_modules", ".bin", "wrangler");
}

/** dotenv syntax; single quotes keep JSON intact and stop `$` expansion. */
function envFileText(vars) {
  return Object.entries(vars)
    .map(([key, value]) => {
      if (!/^[A-Z_][A-Z0-9_]*$/.test(key)) throw new Error(`invalid var name: ${key}`);
      const text = String(value);
      if (text.includes("'") || text.includes("\n")) throw new Error(`var ${key} may not contain a quote or newline`);
      return `${key}='${text}'`;
    })
    .join("\n");
}

function childEnv(root, stateDir) {
  return {
    ...process.env,
    // wrangler refuses Node below 22.12; the `node` devDependency puts a Node 22 binary in node_modules/.bin.
    PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH ?? ""}`,
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_SEND_METRICS: "false",
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
  };
}

// Watches this process from the outside: when our end of its stdin pipe closes (we exited, even
// by SIGKILL), it ends the process groups we registered ("+<pgid>" lines; "-<pgid>" once one has
// ended by itself) and removes the state directory.
const REAPER_SOURCE = `
const [dir, graceMs] = process.argv.slice(1);
const fs = require("node:fs");
const groups = new Set();
let pending = "";
const killAll = (sig) => { for (const g of groups) { try { process.kill(-g, sig); } catch {} } };
process.on("SIGTERM", () => process.exit(0));
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  const lines = pending.split("\\n");
  pending = lines.pop();
  for (const line of lines) {
    const g = Number(line.slice(1));
    if (line[0] === "+") groups.add(g); else groups.delete(g);
  }
});
process.stdin.on("close", () => {
  killAll("SIGTERM");
  setTimeout(() => { killAll("SIGKILL"); fs.rmSync(dir, { recursive: true, force: true }); process.exit(0); }, groups.size ? Number(graceMs) : 0);
});
`;

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** True while any process of the group is still running (zombies awaiting their parent's wait() don't count). */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  let entries;
  try {
    entries = readdirSync("/proc");
  } catch {
    return true; // No /proc: trust kill(0).
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // Exited meanwhile.
    }
    // Fields after "(comm)": state, ppid, pgrp, ...
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z") return true;
  }
  return false;
}

function signalGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is already gone.
  }
}

/**
 * The process groups one dev server owns, and what ends them: stop() (SIGTERM, grace, SIGKILL),
 * this process exiting or being signalled (SIGKILL at once), or this process dying without a
 * chance to clean up (the reaper). Only ever signals groups it started.
 */
function groupGuard(stateDir, graceMs) {
  const groups = new Set();
  let released = false;
  const reaper = spawn(process.execPath, ["-e", REAPER_SOURCE, stateDir, String(graceMs)], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
  });
  reaper.stdin.on("error", () => {});
  reaper.unref();
  reaper.stdin.unref?.();
  const tellReaper = (line) => {
    if (!reaper.stdin.destroyed) reaper.stdin.write(`${line}\n`);
  };

  const signals = ["SIGINT", "SIGTERM", "SIGHUP"];
  const release = () => {
    released = true;
    process.off("exit", killNowSync);
    for (const s of signals) process.off(s, onSignal);
    try {
      process.kill(reaper.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
    rmSync(stateDir, { recursive: true, force: true });
  };
  function killNowSync() {
    if (released) return;
    for (const g of groups) signalGroup(g, "SIGKILL");
    groups.clear();
    release();
  }
  function onSignal(signal) {
    killNowSync();
    // Keep the default behaviour (terminate) unless someone else also handles the signal.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  }
  process.on("exit", killNowSync);
  for (const s of signals) process.on(s, onSignal);

  return {
    /** Spawns `cmd` as the leader of a new process group that this guard owns. */
    spawn(cmd, args, opts) {
      if (released) throw new Error("dev server already stopped");
      const child = spawn(cmd, args, { ...opts, detached: true });
      if (child.pid) {
        groups.add(child.pid);
        tellReaper(`+${child.pid}`);
      }
      return child;
    },
    /** Ends one group: SIGTERM, then SIGKILL after the grace period. */
    async end(pgid, grace = graceMs) {
      if (!groups.has(pgid)) return;
      signalGroup(pgid, "SIGTERM");
      const deadline = Date.now() + grace;
      while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
      if (groupAlive(pgid)) signalGroup(pgid, "SIGKILL");
      // Wait for the kernel to reap the group so callers may assume it is gone.
      const reaped = Date.now() + 2_000;
      while (groupAlive(pgid) && Date.now() < reaped) await sleep(20);
      if (groupAlive(pgid)) throw new Error(`process group ${pgid} survived SIGKILL`);
      groups.delete(pgid);
      tellReaper(`-${pgid}`);
    },
    async endAll() {
      for (const g of [...groups]) await this.end(g);
      if (!released) release();
    },
  };
}

/** Runs a command to completion in its own group, capturing its output; rejects with it on failure. */
async function run(guard, cmd, args, opts) {
  const child = guard.spawn(cmd, args, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => {
    output += d;
  });
  child.stderr.on("data", (d) => {
    output += d;
  });
  const result = await new Promise((resolveRun) => {
    child.once("error", (error) => resolveRun({ error }));
    child.once("exit", (code, signal) => resolveRun({ code, signal }));
  });
  // Whatever the leader left running in its group goes with it.
  if (child.pid) await guard.end(child.pid, 0);
  if (result.error) throw result.error;
  if (result.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${result.code ?? result.signal}):\n${output}`);
  }
  return output;
}

/**
 * Starts `wrangler dev` and resolves once GET /healthz answers 200.
 * @param {import("./dev-server.d.mts").DevServerOptions} [options]
 * @returns {Promise<import("./dev-server.d.mts").DevServer>}
 */
export async function startDevServer(options = {}) {
  const root = options.cwd ?? PROJECT_ROOT;
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const graceMs = options.stopGraceMs ?? 5_000;
  const stateDir = mkdtempSync(join(tmpdir(), "webhost-dev-"));
  const persistDir = join(stateDir, "state");
  const envFile = join(stateDir, "run.env");
  const env = childEnv(root, stateDir);
  const guard = groupGuard(stateDir, graceMs);
  let stopping;
  const stop = () => {
    stopping ??= guard.endAll();
    return stopping;
  };

  const echo = options.echo ?? process.env.DEV_SERVER_ECHO === "1";
  const logLines = [];
  const remember = (chunk) => {
    if (options.logFile) appendFileSync(options.logFile, chunk);
    for (const line of String(chunk).split("\n")) {
      if (line.trim() === "") continue;
      logLines.push(line);
      if (echo) process.stderr.write(`[wrangler] ${line}\n`);
    }
    if (logLines.length > LOG_LINES_KEPT) logLines.splice(0, logLines.length - LOG_LINES_KEPT);
  };

  try {
    if (options.logFile) {
      mkdirSync(dirname(options.logFile), { recursive: true });
      writeFileSync(options.logFile, "");
    }
    const port = options.port ?? (await freePort());
    const inspectorPort = await freePort();
    const vars = { SECRETS_ENCRYPTION_KEY: randomEncryptionKey(), ...options.vars };
    writeFileSync(envFile, `${envFileText(vars)}\n`, { mode: 0o600 });

    remember(
      await run(guard, wranglerBin(root), ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistDir], {
        cwd: root,
        env: { ...env, CI: "true" },
      }),
    );

    const child = guard.spawn(
      wranglerBin(root),
      [
        "dev",
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
      { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout.on("data", remember);
    child.stderr.on("data", remember);
    let exited = null;
    child.once("error", (error) => {
      exited = { error };
    });
    child.once("exit", (code, signal) => {
      exited = { code, signal };
    });

    const baseUrl = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (exited)
        throw new Error(`wrangler dev exited early (${exited.error?.message ?? exited.code ?? exited.signal})`);
      try {
        const res = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(5_000) });
        await res.arrayBuffer();
        if (res.status === 200) break;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`wrangler dev was not ready within ${readyTimeoutMs} ms`);
      await sleep(100);
    }
    // The server must not keep this process alive on its own: callers decide when to stop it.
    child.unref();
    child.stdout.unref?.();
    child.stderr.unref?.();

    return { baseUrl, port, pid: child.pid, stateDir, logs: () => logLines.join("\n"), stop };
  } catch (err) {
    await stop();
    const logs = logLines.join("\n");
    if (err instanceof Error && logs) err.message += `\n--- wrangler output ---\n${logs}`;
    throw err;
  }
}
