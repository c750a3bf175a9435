// Starts commands (wrangler dev, the fake Cloudflare API, `npm run dev`, one-off wrangler runs),
// each as the leader of its own process group, and guarantees that every group started here
// ends: by stop() (SIGTERM, a grace period, SIGKILL), when this process exits or is interrupted
// (SIGKILL at once), and when this process dies without a chance to clean up (a detached reaper
// watching our end of a pipe). Scratch directories get the same guarantee. Processes are only
// ever signalled by the process-group id this module started, never by name.
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Env, offlineEnv, PROJECT_ROOT } from "./offline-env.ts";

const LOG_LINES_KEPT = 400;
const DEFAULT_GRACE_MS = 5_000;

export type Exit = { code: number | null; signal: string | null; error?: Error };

export type LaunchOptions = {
  /** Defaults to the project root. */
  cwd?: string;
  /** Defaults to offlineEnv(). */
  env?: Env;
  /** Copy the output to stderr as it arrives, each line prefixed with `[label]`. */
  echo?: boolean;
  label?: string;
  /** Also append the output to this file. */
  logFile?: string;
  /** Called with every chunk of output (stdout and stderr). */
  onOutput?: (text: string) => void;
  /** Time between SIGTERM and SIGKILL when stopping (default 5 s). */
  stopGraceMs?: number;
};

export type Launched = {
  /** Process id of the leader, which is also the process-group id. */
  pid: number;
  /** Settles when the leader exits (or fails to start); never rejects. */
  exited: Promise<Exit>;
  /** The leader's exit, once it has happened. */
  exit(): Exit | undefined;
  /** The last few hundred lines of output. */
  output(): string;
  /** Ends the whole group: SIGTERM, then SIGKILL after the grace period; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
};

// ---------------------------------------------------------------------------------------------
// What this process owns, and what ends it if we die.

const groups = new Set<number>();
const scratchDirs = new Set<string>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"];
let hooked = false;
let reaper: ChildProcess | undefined;

// Runs detached with our end of its stdin pipe: when that closes (we exited, even by SIGKILL), it
// ends the groups still registered ("+g<pgid>" / "-g<pgid>" lines) and removes the directories
// ("+d<path>" / "-d<path>").
const REAPER_SOURCE = `
const fs = require("node:fs");
const graceMs = Number(process.argv[1]);
const groups = new Set();
const dirs = new Set();
let pending = "";
const killAll = (sig) => { for (const g of groups) { try { process.kill(-g, sig); } catch {} } };
process.on("SIGTERM", () => process.exit(0));
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  const lines = pending.split("\\n");
  pending = lines.pop();
  for (const line of lines) {
    const set = line[1] === "g" ? groups : dirs;
    const value = line[1] === "g" ? Number(line.slice(2)) : line.slice(2);
    if (line[0] === "+") set.add(value); else set.delete(value);
  }
});
process.stdin.on("close", () => {
  killAll("SIGTERM");
  setTimeout(() => {
    killAll("SIGKILL");
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    process.exit(0);
  }, groups.size ? graceMs : 0);
});
`;

function tellReaper(line: string): void {
  if (!reaper) {
    reaper = spawn(process.execPath, ["-e", REAPER_SOURCE, String(DEFAULT_GRACE_MS)], {
      detached: true,
      stdio: ["pipe", "ignore", "ignore"],
    });
    reaper.stdin?.on("error", () => {});
    // Neither the reaper nor its pipe may keep this process alive.
    reaper.unref();
    reaper.stdin?.unref?.();
  }
  if (reaper.stdin && !reaper.stdin.destroyed) reaper.stdin.write(`${line}\n`);
}

function signalGroup(pgid: number, signal: string): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is already gone.
  }
}

/** SIGKILLs every group and removes every scratch directory, synchronously (safe in an exit hook). */
function cleanUpNow(): void {
  for (const g of groups) signalGroup(g, "SIGKILL");
  groups.clear();
  for (const d of scratchDirs) rmSync(d, { recursive: true, force: true });
  scratchDirs.clear();
  settle();
}

function onSignal(signal: string): void {
  cleanUpNow();
  // Keep the default behaviour (terminate) unless someone else also handles the signal.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", cleanUpNow);
  for (const s of SIGNALS) process.on(s, onSignal);
}

/** Once nothing is owned any more: drop the hooks and the reaper. */
function settle(): void {
  if (groups.size > 0 || scratchDirs.size > 0) return;
  if (hooked) {
    hooked = false;
    process.off("exit", cleanUpNow);
    for (const s of SIGNALS) process.off(s, onSignal);
  }
  if (reaper?.pid) {
    try {
      process.kill(reaper.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
  }
  reaper = undefined;
}

/** True while any process of the group is still running (zombies awaiting their parent's wait() don't count). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return true; // No /proc: trust kill(0).
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function endGroup(pgid: number, graceMs: number): Promise<void> {
  if (!groups.has(pgid)) return;
  signalGroup(pgid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
  if (groupAlive(pgid)) signalGroup(pgid, "SIGKILL");
  // Wait for the kernel to reap the group so callers may assume it is gone.
  const reaped = Date.now() + 2_000;
  while (groupAlive(pgid) && Date.now() < reaped) await sleep(20);
  if (groupAlive(pgid)) throw new Error(`process group ${pgid} survived SIGKILL`);
  groups.delete(pgid);
  tellReaper(`-g${pgid}`);
  settle();
}

// ---------------------------------------------------------------------------------------------

/** Starts `cmd` as the leader of a new process group that ends whatever happens to this process. */
export function launch(cmd: string, args: readonly string[], options: LaunchOptions = {}): Launched {
  hook();
  const child = spawn(cmd, args, {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: options.env ?? offlineEnv(),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = child.pid;
  if (pid) {
    groups.add(pid);
    tellReaper(`+g${pid}`);
  }

  const lines: string[] = [];
  const prefix = options.label ? `[${options.label}] ` : "";
  const remember = (chunk: Uint8Array) => {
    const text = String(chunk);
    options.onOutput?.(text);
    if (options.logFile) appendFileSync(options.logFile, text);
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      lines.push(line);
      if (options.echo) process.stderr.write(`${prefix}${line}\n`);
    }
    if (lines.length > LOG_LINES_KEPT) lines.splice(0, lines.length - LOG_LINES_KEPT);
  };
  child.stdout?.on("data", remember);
  child.stderr?.on("data", remember);

  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolveExit) => {
    child.once("error", (error) => {
      exit ??= { code: null, signal: null, error };
      resolveExit(exit);
    });
    child.once("exit", (code, signal) => {
      exit ??= { code, signal };
      resolveExit(exit);
    });
  });
  // Callers decide how long the group lives; it must not keep this process alive on its own.
  child.unref();
  child.stdout?.unref?.();
  child.stderr?.unref?.();

  const graceMs = options.stopGraceMs ?? DEFAULT_GRACE_MS;
  let stopping: Promise<void> | undefined;
  return {
    pid: pid ?? -1,
    exited,
    exit: () => exit,
    output: () => lines.join("\n"),
    stop(grace = graceMs) {
      stopping ??= pid ? endGroup(pid, grace) : Promise.resolve();
      return stopping;
    },
  };
}

/** Runs a command to completion in its own group; resolves with its whole output, rejects with it on failure. */
export async function runToEnd(
  cmd: string,
  args: readonly string[],
  options: LaunchOptions & { timeoutMs?: number } = {},
): Promise<string> {
  let output = "";
  const launched = launch(cmd, args, {
    ...options,
    onOutput: (text) => {
      output += text;
      options.onOutput?.(text);
    },
  });
  const timeoutMs = options.timeoutMs ?? 180_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<Exit>((resolveTimeout) => {
    timer = setTimeout(() => resolveTimeout({ code: null, signal: `timeout after ${timeoutMs} ms` }), timeoutMs);
  });
  const result = await Promise.race([launched.exited, timedOut]);
  clearTimeout(timer);
  // Whatever the leader left running in its group goes with it.
  await launched.stop(0);
  if (result.error) throw result.error;
  if (result.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${result.code ?? result.signal}):\n${output.slice(-3000)}`);
  }
  return output;
}

/**
 * Polls `url` until it answers with a status `accept` likes (default: 2xx). Fails early when
 * `launched` exits first, or after `timeoutMs`.
 */
export async function waitForHttp(
  url: string,
  options: { timeoutMs?: number; intervalMs?: number; launched?: Launched; accept?: (status: number) => boolean } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const accept = options.accept ?? ((status) => status >= 200 && status < 300);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exit = options.launched?.exit();
    if (exit)
      throw new Error(`the server exited before ${url} answered (${exit.error?.message ?? exit.code ?? exit.signal})`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      await res.arrayBuffer();
      if (accept(res.status)) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await sleep(options.intervalMs ?? 100);
  }
}

/** A fresh temporary directory, removed at exit (even if this process is killed) unless removed earlier. */
export function scratchDir(prefix: string): string {
  hook();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.add(dir);
  tellReaper(`+d${dir}`);
  return dir;
}

export function removeScratchDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  if (scratchDirs.delete(dir)) {
    tellReaper(`-d${dir}`);
    settle();
  }
}
