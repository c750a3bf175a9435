// The agent host and its watchdog (DISPATCH_MODE=host, docs/local-isolation.md): starts
// `wrangler dev -c wrangler.host.toml` as its own process group (launcher.ts), probes its /healthz
// every `probeIntervalMs` with a `probeTimeoutMs` budget, and when `failuresBeforeRestart` probes
// in a row fail (an agent's code is looping on the host's thread, or the process died) it ends
// the group (SIGTERM, a short grace, SIGKILL), removes the host's dev-registry entry (a killed
// wrangler leaves it behind, and a stale entry keeps the new host from registering for 90 s), and
// starts the host again. Every probe failure, restart and recovery is logged with its timing.
// The gateway finds the host through the dev registry, so both must share WRANGLER_REGISTRY_PATH.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./dev-server.ts";
import { type Launched, launch, waitForHttp } from "./launcher.ts";
import { type Env, PROJECT_BIN } from "./offline-env.ts";

/** The host Worker's name in wrangler.host.toml: its dev-registry entry is a file of that name. */
export const AGENT_HOST_NAME = "webhost-agent-host";
export const AGENT_HOST_CONFIG = "wrangler.host.toml";

export type WatchdogOptions = {
  /** Time between probes (default 1000 ms). */
  probeIntervalMs?: number;
  /** How long one probe may take before it counts as failed (default 1500 ms). */
  probeTimeoutMs?: number;
  /** Failed probes in a row that restart the host (default 2). */
  failuresBeforeRestart?: number;
  /** Grace between SIGTERM and SIGKILL when restarting (default 1000 ms: a stuck host never exits cleanly). */
  stopGraceMs?: number;
};

export type AgentHostOptions = WatchdogOptions & {
  /** wrangler's environment; WRANGLER_REGISTRY_PATH must be the gateway's. */
  env: Env;
  /** Where wrangler keeps the host's local state (it has no storage of its own). */
  persistDir: string;
  /** How long a (re)start may take before it counts as failed (default 60 s). */
  readyTimeoutMs?: number;
  /** Copy the host's output (agents' console lines, wrangler's errors) to stderr, prefixed `[agent-host]`. */
  echo?: boolean;
  logFile?: string;
  /** wrangler's log level for the host (default "warn"; "log" shows agents' console lines). */
  logLevel?: "debug" | "info" | "log" | "warn" | "error" | "none";
  /** Each watchdog line (default: stderr). */
  log?: (line: string) => void;
};

export type WatchdogEvent =
  | { at: number; kind: "probe_failed"; failures: number; error: string }
  | { at: number; kind: "restarting"; pid: number }
  | { at: number; kind: "ready"; pid: number; startMs: number }
  | { at: number; kind: "start_failed"; error: string };

export type AgentHost = {
  port: number;
  /** The current host process group (changes on every restart). */
  pid(): number;
  restarts(): number;
  events(): readonly WatchdogEvent[];
  /** The current host's last output lines. */
  logs(): string;
  /** Stops the watchdog, then the host's process group. */
  stop(): Promise<void>;
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The host's output on stderr, prefixed, without wrangler's line for each watchdog probe. */
function echoLines(text: string): void {
  for (const line of text.split("\n")) {
    if (line.trim() === "" || /GET \/healthz 200/.test(line)) continue;
    process.stderr.write(`[agent-host] ${line}\n`);
  }
}

/** Starts the host, waits until it answers, and keeps it answering until stop(). */
export async function startAgentHost(options: AgentHostOptions): Promise<AgentHost> {
  const intervalMs = options.probeIntervalMs ?? 1_000;
  const probeTimeoutMs = options.probeTimeoutMs ?? 1_500;
  const failuresBeforeRestart = options.failuresBeforeRestart ?? 2;
  const stopGraceMs = options.stopGraceMs ?? 1_000;
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const registryPath = options.env.WRANGLER_REGISTRY_PATH;
  if (!registryPath) throw new Error("the agent host needs WRANGLER_REGISTRY_PATH (shared with the gateway)");
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/healthz`;
  const events: WatchdogEvent[] = [];
  const note = (event: WatchdogEvent) => {
    events.push(event);
    if (events.length > 200) events.shift();
  };

  let current: Launched | undefined;
  let restarts = 0;
  let stopped = false;

  const start = async (): Promise<void> => {
    const started = Date.now();
    const inspectorPort = await freePort();
    const launched = launch(
      join(PROJECT_BIN, "wrangler"),
      [
        "dev",
        "--config",
        AGENT_HOST_CONFIG,
        "--ip",
        "127.0.0.1",
        "--port",
        String(port),
        "--inspector-port",
        String(inspectorPort),
        "--persist-to",
        options.persistDir,
        "--show-interactive-dev-session=false",
        "--log-level",
        options.logLevel ?? "warn",
      ],
      { env: options.env, onOutput: options.echo ? echoLines : undefined, logFile: options.logFile, stopGraceMs },
    );
    current = launched;
    await waitForHttp(url, { launched, timeoutMs: readyTimeoutMs, accept: (s) => s === 200 });
    const startMs = Date.now() - started;
    note({ at: Date.now(), kind: "ready", pid: launched.pid, startMs });
    log(`[watchdog] agent host ready on 127.0.0.1:${port} (pid ${launched.pid}) in ${startMs} ms`);
  };

  const restart = async (): Promise<void> => {
    const old = current;
    if (old) {
      note({ at: Date.now(), kind: "restarting", pid: old.pid });
      log(`[watchdog] restarting the agent host (process group ${old.pid})`);
      await old.stop(stopGraceMs);
    }
    // A killed wrangler cannot unregister: its stale entry would block the new host's for 90 s.
    rmSync(join(registryPath, AGENT_HOST_NAME), { force: true });
    restarts++;
    for (let attempt = 1; !stopped; attempt++) {
      try {
        await start();
        return;
      } catch (err) {
        if (stopped) return;
        const error = err instanceof Error ? (err.message.split("\n")[0] ?? "") : String(err);
        note({ at: Date.now(), kind: "start_failed", error });
        log(`[watchdog] the agent host failed to start (attempt ${attempt}): ${error}`);
        await current?.stop(stopGraceMs);
        await sleep(Math.min(30_000, 1_000 * 2 ** Math.min(attempt, 5)));
      }
    }
  };

  const probe = async (): Promise<string | null> => {
    if (current?.exit()) return `the host process exited (${current.exit()?.code ?? current.exit()?.signal})`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(probeTimeoutMs) });
      await res.arrayBuffer();
      return res.status === 200 ? null : `status ${res.status}`;
    } catch (err) {
      return err instanceof Error && err.name === "TimeoutError"
        ? `no answer within ${probeTimeoutMs} ms`
        : String(err instanceof Error ? err.message : err);
    }
  };

  const watch = async () => {
    let failures = 0;
    while (!stopped) {
      await sleep(intervalMs);
      if (stopped) break;
      const error = await probe();
      if (stopped) break;
      if (error === null) {
        failures = 0;
        continue;
      }
      failures++;
      note({ at: Date.now(), kind: "probe_failed", failures, error });
      log(`[watchdog] agent host probe failed (${failures}/${failuresBeforeRestart}): ${error}`);
      if (failures >= failuresBeforeRestart || current?.exit()) {
        failures = 0;
        await restart();
      }
    }
  };

  rmSync(join(registryPath, AGENT_HOST_NAME), { force: true });
  try {
    await start();
  } catch (err) {
    await current?.stop(0);
    throw err;
  }
  const watching = watch();

  let stopping: Promise<void> | undefined;
  return {
    port,
    pid: () => current?.pid ?? -1,
    restarts: () => restarts,
    events: () => events,
    logs: () => current?.output() ?? "",
    stop() {
      stopping ??= (async () => {
        stopped = true;
        await current?.stop(stopGraceMs);
        await watching.catch(() => {});
        // A restart in progress may have launched one more.
        await current?.stop(0);
      })();
      return stopping;
    },
  };
}
