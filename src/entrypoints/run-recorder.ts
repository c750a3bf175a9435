// The RunRecorder Durable Object: one per run (named by the run id). It owns the run's call to the
// agent (services/runs/call.ts): the gateway hands it over, already routed and admitted, and this
// object makes it, so the run outlives the client and the gateway's request. It keeps the run's
// events in its SQLite storage in batches behind relaying them (services/runs/drive.ts), serves them
// again to a client that comes back (replay after an event id, then follow live until the end),
// aborts the call on cancel, and ends a run whose driver went away. A /stream run's call is made
// at once and its event stream answered to the gateway; a background run's call is stored and made
// by an alarm. An alarm deletes everything 24 hours after the run ends.
import { DurableObject } from "cloudflare:workers";
import { composeServices, configFreeServices } from "../compose";
import { type Env, getConfig } from "../env";
import { describeError, logError } from "../lib/logger";
import { closeBackgroundRun, driveBackgroundRun, openAttachedRun, type RunCallDeps } from "../services/runs/call";
import { blockData, sseBlock, withId } from "../services/runs/sse-blocks";
import {
  CANCEL_GRACE_MS,
  RUN_RETENTION_MS,
  type RunCall,
  type RunEnd,
  type RunOpening,
  type RunRecorderApi,
  type RunStart,
  type RunView,
  type RunWaitResult,
  runStatusFor,
} from "../services/runs/types";

/** Comment line sent to idle followers so proxies keep the connection open. */
export const HEARTBEAT_MS = 15_000;
const heartbeat = new TextEncoder().encode(": heartbeat\n\n");
/** Slack after a run's deadline before its alarm ends it as timed out (the driver ends it first). */
const ORPHAN_SLACK_MS = 60_000;
/** The storage key of a background run's call, kept until the run has ended and been closed. */
const BACKGROUND = "background";
/**
 * A stored value or row is at most 2 MB on Cloudflare, and a call's body may be larger (the tier's
 * invokeBodyBytes): it is stored in parts of this many UTF-16 code units (at most 1.5 MB of UTF-8).
 */
const PAYLOAD_PART_CHARS = 512 * 1024;
/**
 * Cloudflare ends an alarm handler after 15 minutes of wall time (workerd enforces it); a
 * background run whose tier allows a longer stream ends `timed_out` this long before that, so it
 * ends with its terminal event recorded and measured rather than cut off mid-stream.
 */
const ALARM_WALL_MS = 15 * 60_000;
const ALARM_MARGIN_MS = 30_000;
/** Alarm retries of a background run whose services could not be built before it is given up. */
const MAX_SETUP_RETRIES = 3;

/** A background run's call; `attempted` is stored before the agent is called, so a retry never calls twice. */
type Background = { spec: RunCall; attempted: boolean };

type Stored = RunStart & {
  status: RunView["status"];
  endedAt: number | null;
  errorCode?: string;
  answer?: unknown;
  lastSeq: number;
};

type Follower = { push(seq: number, bytes: Uint8Array): void; close(): void };

// Both kinds of run build the services their call needs from this object's env (compose.ts).
export class RunRecorder extends DurableObject<Env> implements RunRecorderApi {
  private run: Stored | null = null;
  /** Whether `run` has been read from storage (or is a new run that nothing was stored for yet). */
  private loaded = false;
  /** Whether the tables exist: only a started run creates them. */
  private hasTables = false;
  private readonly followers = new Set<Follower>();
  private readonly endWaiters = new Set<() => void>();
  private readonly cancelWaiters = new Set<(cancelled: boolean) => void>();
  private cancelRequested = false;
  private readonly encoder = new TextEncoder();

  /** Whether this instance's alarm is driving the background run now. */
  private driving = false;
  /** Whether this instance is driving a /stream run (it was handed the call: `stream`). */
  private streaming = false;

  async stream(run: RunStart, spec: RunCall): Promise<RunOpening> {
    // A run id is new each time: nothing is read from storage, and nothing is stored until the
    // first event has left (under wrangler dev a new object's storage is created on the gateway's
    // thread and would hold that event back). Until then the run lives in memory, where reads,
    // follows and cancels already find it.
    this.loaded = true;
    if (this.run) throw new Error(`run ${run.id} has already started`);
    const deps = await this.callServices();
    this.run = { ...run, status: "running", endedAt: null, lastSeq: 0 };
    this.streaming = true;
    let isStored = false;
    let stored: () => void = () => {};
    const started = new Promise<void>((resolve) => {
      stored = resolve;
    });
    const begin = () => {
      if (isStored) return;
      isStored = true;
      this.save();
      stored();
      // Should this object stop mid-run, its alarm ends the run (timed_out) after its deadline.
      if (this.run?.status === "running") this.ctx.storage.setAlarm(run.deadline + ORPHAN_SLACK_MS).catch(() => {});
    };
    let opened: Awaited<ReturnType<typeof openAttachedRun>>;
    try {
      opened = await openAttachedRun(deps, spec, run, this, { begin, started });
    } catch (err) {
      if (this.run?.status === "running") {
        begin();
        await this.endHere("run_start_failed", "the run could not be started");
      }
      throw err;
    }
    const { opening, done } = opened;
    // The object keeps working after the gateway has stopped reading (a client that went away):
    // pending work keeps a Durable Object running (docs/api.md, "Who drives a run").
    this.ctx.waitUntil(
      done.then(async () => {
        if (this.run?.status !== "running") return;
        begin();
        await this.endHere("run_interrupted", "the run's driver stopped before the run ended");
      }),
    );
    return opening;
  }

  /** Touches nothing: creating the object is the point (services/runs/start.ts). */
  async wake(): Promise<void> {}

  async startBackground(run: RunStart, spec: RunCall): Promise<void> {
    this.load();
    if (this.run) return;
    this.record(run);
    this.holdCall(spec, false);
    // Now: the alarm calls the agent (this RPC answers first, so the gateway's 202 does not wait).
    await this.ctx.storage.setAlarm(Date.now());
  }

  /** Stores a new run's record. */
  private record(run: RunStart) {
    this.loaded = true;
    this.run = { ...run, status: "running", endedAt: null, lastSeq: 0 };
    this.save();
  }

  async append(from: number, blocks: string[], end?: RunEnd): Promise<{ cancel: boolean }> {
    this.load();
    const run = this.run;
    if (run?.status !== "running") return { cancel: true };
    this.tables();
    const sql = this.ctx.storage.sql;
    let seq = from;
    for (const block of blocks) {
      // The driver numbers events; one already stored (a retried batch) is not stored twice.
      if (seq > run.lastSeq) {
        sql.exec("INSERT INTO events (seq, block) VALUES (?, ?)", seq, block);
        run.lastSeq = seq;
        this.broadcast(seq, this.encoder.encode(withId(seq, block)));
      }
      seq++;
    }
    if (end) await this.finish(end);
    else this.save();
    return { cancel: this.cancelRequested };
  }

  untilCancelled(): Promise<boolean> {
    this.load();
    if (this.cancelRequested) return Promise.resolve(true);
    if (this.run?.status !== "running") return Promise.resolve(false);
    return new Promise((resolve) => this.cancelWaiters.add(resolve));
  }

  async get(userId: string): Promise<RunView | null> {
    return this.mine(userId) ? this.view() : null;
  }

  async cancel(userId: string): Promise<{ run: RunView; alreadyEnded: boolean } | null> {
    const run = this.mine(userId);
    if (!run) return null;
    if (run.status !== "running") return { run: this.view(), alreadyEnded: true };
    if (!this.cancelRequested) {
      this.cancelRequested = true;
      const waiters = [...this.cancelWaiters];
      this.cancelWaiters.clear();
      for (const resolve of waiters) resolve(true);
      // Nobody is driving the run (its driver ended without a word): end it here.
      if (waiters.length === 0) await this.endHere("cancelled", "the run was cancelled");
    }
    // The driver aborts the agent's call and records the run's end; if it does not within the
    // grace period, the run is ended here (later appends from it are ignored).
    await this.untilEnded(CANCEL_GRACE_MS);
    if (this.run?.status === "running") await this.endHere("cancelled", "the run was cancelled");
    return { run: this.view(), alreadyEnded: false };
  }

  async events(userId: string, after: number): Promise<ReadableStream<Uint8Array> | null> {
    const run = this.mine(userId);
    if (!run) return null;
    const rows = this.hasTables
      ? this.ctx.storage.sql
          .exec<{ seq: number; block: string }>("SELECT seq, block FROM events WHERE seq > ? ORDER BY seq", after)
          .toArray()
      : [];
    let follower: Follower | null = null;
    let timer: ReturnType<typeof setInterval> | null = null;
    const stop = () => {
      if (timer !== null) clearInterval(timer);
      if (follower) this.followers.delete(follower);
    };
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        for (const row of rows) controller.enqueue(this.encoder.encode(withId(row.seq, row.block)));
        if (run.status !== "running") {
          // The terminal event is always sent, even to a client that already had it.
          if (rows.length === 0 && run.lastSeq > 0) {
            const last = this.ctx.storage.sql
              .exec<{ block: string }>("SELECT block FROM events WHERE seq = ?", run.lastSeq)
              .toArray()[0];
            if (last) controller.enqueue(this.encoder.encode(withId(run.lastSeq, last.block)));
          }
          controller.close();
          return;
        }
        // Registered in the same turn as the read above: no event can fall between replay and live.
        follower = {
          // A client can hold events not stored yet (the attached stream gets each before it is
          // recorded): one it resumes after is not sent again when it is stored.
          push: (seq, bytes) => {
            if (seq > after) controller.enqueue(bytes);
          },
          close: () => {
            stop();
            controller.close();
          },
        };
        this.followers.add(follower);
        timer = setInterval(() => controller.enqueue(heartbeat), HEARTBEAT_MS);
      },
      cancel: () => stop(),
    });
  }

  async wait(userId: string, timeoutMs: number): Promise<RunWaitResult | null> {
    if (!this.mine(userId)) return null;
    await this.untilEnded(timeoutMs);
    const run = this.run as Stored;
    const result: RunWaitResult = { run: this.view() };
    if (run.status === "succeeded") result.response = run.answer;
    else if (run.status !== "running") {
      const last = this.ctx.storage.sql
        .exec<{ block: string }>("SELECT block FROM events WHERE seq = ?", run.lastSeq)
        .toArray()[0];
      result.error = terminalError(last?.block, run.errorCode);
    }
    return result;
  }

  override async alarm(info?: AlarmInvocationInfo): Promise<void> {
    this.load();
    const run = this.run;
    if (!run) return void (await this.ctx.storage.deleteAll());
    const background = this.heldCall();
    if (background) {
      if (!this.driving) return this.background(run, background, info);
      // Driving now (its own deadlines end the run): only a run past its deadline is ended here.
      if (Date.now() < run.deadline + ORPHAN_SLACK_MS) return;
    }
    if (run.status === "running") {
      // A /stream run's driver lives in the instance that was handed the call: in any other (the
      // object was restarted mid-run, e.g. by a deploy of the gateway) it is gone, and the agent
      // is not called again.
      if (!background && !this.streaming) {
        await this.endHere("run_interrupted", "the run was interrupted; the agent is not called again");
      } else {
        await this.endHere("timed_out", "the run did not end before its deadline");
      }
      return;
    }
    if (run.endedAt !== null && Date.now() >= run.endedAt + RUN_RETENTION_MS) {
      await this.ctx.storage.deleteAll();
      this.run = null;
      return;
    }
    await this.ctx.storage.setAlarm((run.endedAt ?? Date.now()) + RUN_RETENTION_MS);
  }

  // ---------------------------------------------------------------------------------------------

  /** What calling the agent needs, from this object's env. */
  private async callServices(): Promise<RunCallDeps> {
    const services = composeServices(this.env, this.ctx, await getConfig(this.env));
    return {
      db: services.db,
      usageQueue: services.usageQueue,
      sessions: services.sessions,
      keyring: services.keyring,
      artifacts: services.artifacts,
      // Built here, so a configuration it rejects fails the setup, not the call.
      runtime: services.runtime,
    };
  }

  /**
   * Reads the run from storage, once, when first needed. Asking for a run id that was never
   * started (a guess, a typo) creates nothing: only a started run creates tables.
   */
  private load() {
    if (this.loaded) return;
    this.loaded = true;
    const sql = this.ctx.storage.sql;
    this.hasTables = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run'").toArray().length > 0;
    const row = this.hasTables
      ? sql.exec<{ json: string }>("SELECT json FROM run WHERE k = 1").toArray()[0]
      : undefined;
    this.run = row ? (JSON.parse(row.json) as Stored) : null;
    // A running /stream run read from storage has lost its driver (it lives only in the instance
    // that made the call): the alarm ends it now rather than at its deadline.
    if (this.run?.status === "running" && this.ctx.storage.kv.get(BACKGROUND) === undefined) {
      this.ctx.storage.setAlarm(Date.now()).catch(() => {});
    }
  }

  private tables() {
    if (this.hasTables) return;
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS run (k INTEGER PRIMARY KEY CHECK (k = 1), json TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, block TEXT NOT NULL)");
    this.hasTables = true;
  }

  /**
   * A background run's alarm: calls the agent and drives the run to its end (the handler runs as
   * long as the run does). A run that already ended (cancelled before this alarm) or whose earlier
   * attempt was interrupted (the object was reset mid-run and the platform retried the alarm) is
   * closed without calling the agent again: the latter ends `failed` with `run_interrupted`.
   */
  private async background(run: Stored, background: Background, info?: AlarmInvocationInfo): Promise<void> {
    const alarmStarted = Date.now();
    let deps: RunCallDeps;
    try {
      deps = await this.callServices();
    } catch (err) {
      logError("run_background_setup_failed", { runId: run.id, error: describeError(err) });
      // Thrown: the platform retries the alarm (nothing was called yet); after a few, the run ends.
      if ((info?.retryCount ?? 0) < MAX_SETUP_RETRIES) throw err;
      if (run.status === "running") await this.endHere("run_start_failed", "the run could not be started");
      // The agent was never called: its session's turn is freed uncounted, without the
      // configuration that just failed.
      await closeBackgroundRun(configFreeServices(this.env), background.spec, {
        reachedAgent: false,
        ok: false,
        errorCode: "run_start_failed",
      });
      this.dropCall();
      return;
    }

    // Should this handler die mid-run and the platform give up retrying it, this alarm ends the run:
    // set from when driving stops at the latest (the run's deadline, or the alarm's wall time).
    const driveUntil = Math.min(run.deadline, alarmStarted + ALARM_WALL_MS - ALARM_MARGIN_MS);
    await this.ctx.storage.setAlarm(driveUntil + ORPHAN_SLACK_MS);
    if (run.status !== "running" || background.attempted) {
      if (run.status === "running") {
        await this.endHere("run_interrupted", "the run was interrupted; the agent is not called again");
      }
      await closeBackgroundRun(deps, background.spec, {
        reachedAgent: background.attempted,
        // A run that had ended (its measurement may not have been sent) is measured as it ended.
        ok: run.status === "succeeded",
        errorCode: run.errorCode ?? "run_interrupted",
      });
    } else {
      // Stored before the call: a retry of this alarm after a crash must not call the agent twice.
      this.ctx.storage.kv.put<Background>(BACKGROUND, { spec: withoutPayload(background.spec), attempted: true });
      this.driving = true;
      try {
        await driveBackgroundRun(deps, background.spec, run, this, driveUntil);
      } catch (err) {
        logError("run_drive_failed", { runId: run.id, error: describeError(err) });
      } finally {
        this.driving = false;
      }
      if (this.run?.status === "running") {
        await this.endHere("run_interrupted", "the run's driver stopped before the run ended");
      }
    }
    this.dropCall();
    await this.ctx.storage.setAlarm((this.run?.endedAt ?? Date.now()) + RUN_RETENTION_MS);
  }

  /** Stores a background run's call: its body in parts (PAYLOAD_PART_CHARS), the rest as one value. */
  private holdCall(spec: RunCall, attempted: boolean) {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS call_payload (i INTEGER PRIMARY KEY, part TEXT NOT NULL)");
    sql.exec("DELETE FROM call_payload");
    const text = spec.call.payload;
    for (let i = 0, from = 0; from < text.length; i++) {
      let to = Math.min(from + PAYLOAD_PART_CHARS, text.length);
      // Never between the two halves of a surrogate pair.
      const last = text.charCodeAt(to - 1);
      if (to < text.length && last >= 0xd800 && last <= 0xdbff) to--;
      sql.exec("INSERT INTO call_payload (i, part) VALUES (?, ?)", i, text.slice(from, to));
      from = to;
    }
    this.ctx.storage.kv.put<Background>(BACKGROUND, { spec: withoutPayload(spec), attempted });
  }

  /** The background run's call, whole again; undefined once the run is closed (or for a /stream run). */
  private heldCall(): Background | undefined {
    const held = this.ctx.storage.kv.get<Background>(BACKGROUND);
    if (!held) return undefined;
    const payload = this.ctx.storage.sql
      .exec<{ part: string }>("SELECT part FROM call_payload ORDER BY i")
      .toArray()
      .map((row) => row.part)
      .join("");
    return { ...held, spec: { ...held.spec, call: { ...held.spec.call, payload } } };
  }

  private dropCall() {
    this.ctx.storage.kv.delete(BACKGROUND);
    this.ctx.storage.sql.exec("DELETE FROM call_payload");
  }

  private mine(userId: string): Stored | null {
    this.load();
    return this.run && this.run.userId === userId ? this.run : null;
  }

  private view(): RunView {
    const r = this.run as Stored;
    const view: RunView = {
      id: r.id,
      agentId: r.agentId,
      deploymentId: r.deploymentId,
      status: r.status,
      createdAt: r.createdAt,
      startedAt: r.startedAt,
      endedAt: r.endedAt,
    };
    if (r.errorCode) view.errorCode = r.errorCode;
    return view;
  }

  private save() {
    this.tables();
    this.ctx.storage.sql.exec(
      "INSERT INTO run (k, json) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET json = excluded.json",
      JSON.stringify(this.run),
    );
  }

  private broadcast(seq: number, bytes: Uint8Array) {
    for (const f of this.followers) {
      try {
        f.push(seq, bytes);
      } catch {
        this.followers.delete(f);
      }
    }
  }

  /** Ends the run without its driver: records the terminal `error` event itself. */
  private async endHere(code: "cancelled" | "timed_out" | "run_interrupted" | "run_start_failed", message: string) {
    const run = this.run as Stored;
    const seq = run.lastSeq + 1;
    const block = sseBlock("error", { code, message });
    this.tables();
    this.ctx.storage.sql.exec("INSERT INTO events (seq, block) VALUES (?, ?)", seq, block);
    run.lastSeq = seq;
    this.broadcast(seq, this.encoder.encode(withId(seq, block)));
    await this.finish({ status: runStatusFor({ ok: false, errorCode: code }), errorCode: code });
  }

  private async finish(end: RunEnd) {
    const run = this.run as Stored;
    run.status = end.status;
    run.endedAt = Date.now();
    if (end.errorCode) run.errorCode = end.errorCode;
    if (end.answer !== undefined) run.answer = end.answer;
    this.save();
    // A background run that ended before its alarm drove it (a cancel) still needs that alarm:
    // it releases the session's turn and measures the run.
    const closing = !this.driving && this.ctx.storage.kv.get(BACKGROUND) !== undefined;
    await this.ctx.storage.setAlarm(closing ? Date.now() : run.endedAt + RUN_RETENTION_MS);
    for (const f of [...this.followers]) {
      try {
        f.close();
      } catch {}
    }
    this.followers.clear();
    for (const resolve of this.cancelWaiters) resolve(false);
    this.cancelWaiters.clear();
    for (const resolve of this.endWaiters) resolve();
    this.endWaiters.clear();
  }

  private untilEnded(timeoutMs: number): Promise<void> {
    if (this.run?.status !== "running" || timeoutMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.endWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.endWaiters.add(done);
    });
  }
}

function withoutPayload(spec: RunCall): RunCall {
  return { ...spec, call: { ...spec.call, payload: "" } };
}

/** The `{ code, message }` of a run's terminal `error` event. */
function terminalError(block: string | undefined, fallbackCode = "failed"): { code: string; message: string } {
  const data = (block ? blockData(block) : undefined) as { code?: unknown; message?: unknown } | undefined;
  return {
    code: typeof data?.code === "string" ? data.code : fallbackCode,
    message: typeof data?.message === "string" ? data.message : "the run failed",
  };
}
