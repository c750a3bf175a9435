// Runs: every /stream is a run recorded by its Durable Object (the real RunRecorder runs in the
// test pool). Resume after an event id, a run that finishes with nobody attached, cancel,
// background runs with wait (driven by their Durable Object's alarm: the held call, a crash
// retry, a cancel before the alarm, the deadline, metering once), the limits, and tenant isolation.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RunRecorder } from "../src/entrypoints/run-recorder";
import { newId } from "../src/lib/ids";
import type { RunCall, RunRecorderApi, RunStart } from "../src/services/runs/types";
import { type SessionKey, sessionObjectName } from "../src/services/sessions/types";
import * as modules from "./fixtures/modules";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userIdOf, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { collectSse, type SseEvent, sseEvents } from "./helpers/sse";
import { drainUsageQueue } from "./helpers/usage-queue";
import { waitFor } from "./helpers/wait";

async function agentRunning(moduleCode: string) {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  await deployAndActivate(user.headers, agent.id, { moduleCode });
  return { ...user, agent };
}

/** Reads a stream until (and including) the event with id `lastId`, then drops the connection. */
async function readUntil(res: Response, lastId: number): Promise<SseEvent[]> {
  const seen: SseEvent[] = [];
  for await (const event of sseEvents(res)) {
    seen.push(event);
    if (Number(event.id) === lastId) break; // leaving the loop cancels the body: the client is gone
  }
  return seen;
}

const ids = (events: SseEvent[]) => events.map((e) => Number(e.id));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function runStatus(headers: Record<string, string>, runId: string) {
  return (await json(await call("GET", `/v1/runs/${runId}`, { headers }))).run;
}

async function untilEnded(headers: Record<string, string>, runId: string) {
  return waitFor(
    async () => {
      const run = await runStatus(headers, runId);
      return run.status === "running" ? undefined : run;
    },
    { timeoutMs: 15_000, intervalMs: 100, what: `run ${runId} to end` },
  );
}

/** Asks the CANCEL_OBSERVER agent whether the stream opened with `key` was cancelled. */
async function agentSawCancel(headers: Record<string, string>, agentId: string, key: string) {
  return waitFor(
    async () => {
      const res = await call("POST", `/v1/invoke/${agentId}`, { headers, body: userMessage(`cancelled? ${key}`) });
      return (await json(res)).output.text === "true" ? true : undefined;
    },
    { timeoutMs: 5_000, intervalMs: 100, what: "the agent's stream to be cancelled" },
  );
}

describe("runs: /stream is a run with numbered events", () => {
  it("resumes after Last-Event-ID 3 at event 4, with no gap and no duplicate, and ends with done", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("8 50") });
    expect(res.status).toBe(200);
    const runId = res.headers.get("x-run-id")!;
    expect(runId).toMatch(/^run_[0-9a-z]{26}$/);
    const first = await readUntil(res, 3);
    expect(ids(first)).toEqual([1, 2, 3]);

    const resumed = await collectSse(
      await call("GET", `/v1/runs/${runId}/events`, { headers: { ...headers, "last-event-id": "3" } }),
    );
    // 8 deltas and done: events 1..9; the resumed stream carries 4..9 exactly.
    expect(ids(resumed)).toEqual(range(4, 9));
    expect(resumed.map((e) => e.data.text ?? e.event)).toEqual(["4", "5", "6", "7", "8", "done"]);
    expect(resumed.at(-1)).toMatchObject({ event: "done", data: { output: { text: "counted 8" } } });

    // ?after=n does the same; a run that has ended replays and closes.
    const again = await collectSse(await call("GET", `/v1/runs/${runId}/events?after=6`, { headers }));
    expect(ids(again)).toEqual(range(7, 9));
    expect(await runStatus(headers, runId)).toMatchObject({
      id: runId,
      agentId: agent.id,
      status: "succeeded",
      endedAt: expect.any(Number),
    });
  });

  it("finds the run at once: a read right after x-run-id, before any event is read, answers running", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("3 300") });
    const runId = res.headers.get("x-run-id")!;
    expect(await runStatus(headers, runId)).toMatchObject({ id: runId, status: "running", endedAt: null });
    expect(ids(await collectSse(res))).toEqual([1, 2, 3, 4]);
  });

  it("numbers events 1, 2, 3, … with no gap even when the agent emits hundreds in the same millisecond", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("300 0") });
    const live = await collectSse(res);
    expect(ids(live)).toEqual(range(1, 301));
    const replay = await collectSse(
      await call("GET", `/v1/runs/${res.headers.get("x-run-id")}/events?after=0`, { headers }),
    );
    expect(ids(replay)).toEqual(range(1, 301));
    expect(replay.map((e) => e.data)).toEqual(live.map((e) => e.data));
  });

  it("finishes and records the whole run after the client disconnects", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("6 100") });
    const runId = res.headers.get("x-run-id")!;
    await readUntil(res, 1);
    expect((await runStatus(headers, runId)).status).toBe("running");

    expect(await untilEnded(headers, runId)).toMatchObject({ status: "succeeded" });
    const all = await collectSse(await call("GET", `/v1/runs/${runId}/events`, { headers }));
    expect(ids(all)).toEqual(range(1, 7));
    expect(all.at(-1)).toMatchObject({ event: "done", data: { output: { text: "counted 6" } } });
  });

  it("follows a running run live from its start and closes after the terminal event", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("5 100") });
    const runId = res.headers.get("x-run-id")!;
    const follower = call("GET", `/v1/runs/${runId}/events?after=0`, { headers });
    const [live, followed] = await Promise.all([collectSse(res), follower.then(collectSse)]);
    expect(ids(followed)).toEqual(ids(live));
    expect(followed.at(-1)!.event).toBe("done");
  });

  it("sends the terminal event again to a client that resumes after it", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("2 0") });
    await collectSse(res);
    const runId = res.headers.get("x-run-id")!;
    await untilEnded(headers, runId);
    const tail = await collectSse(
      await call("GET", `/v1/runs/${runId}/events`, { headers: { ...headers, "last-event-id": "3" } }),
    );
    expect(tail.map((e) => [e.id, e.event])).toEqual([["3", "done"]]);
  });
});

describe("runs: cancel", () => {
  it("aborts the agent's stream and ends the run cancelled; a second cancel is 409 run_ended", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const key = crypto.randomUUID();
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage(`lively ${key}`) });
    const runId = res.headers.get("x-run-id")!;
    const events = sseEvents(res);
    expect((await events.next()).value).toMatchObject({ id: "1", event: "delta" });

    const cancelled = await call("POST", `/v1/runs/${runId}/cancel`, { headers });
    expect(cancelled.status).toBe(200);
    expect((await json(cancelled)).run).toMatchObject({ id: runId, status: "cancelled", errorCode: "cancelled" });
    await agentSawCancel(headers, agent.id, key);

    // The attached client's stream ends with the terminal error event.
    const rest: SseEvent[] = [];
    for await (const e of events) rest.push(e);
    expect(rest.at(-1)).toMatchObject({ event: "error", data: { code: "cancelled" } });
    const recorded = await collectSse(await call("GET", `/v1/runs/${runId}/events`, { headers }));
    expect(ids(recorded)).toEqual(range(1, recorded.length));
    expect(recorded.at(-1)).toMatchObject({ event: "error", data: { code: "cancelled" } });

    await expectProblem(await call("POST", `/v1/runs/${runId}/cancel`, { headers }), 409, "run_ended");
  });

  it("cancels a background run nobody is attached to", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const key = crypto.randomUUID();
    const started = await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body: userMessage(`lively ${key}`) });
    expect(started.status).toBe(202);
    const { run } = await json(started);
    await waitFor(
      async () => {
        const res = await call("GET", `/v1/runs/${run.id}/events?after=0`, { headers });
        // An ended run closes its stream; a running one stays open: read just the first event.
        const first = await sseEvents(res).next();
        return first.value ? true : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 100, what: "the background run's first event" },
    );
    const cancelled = await call("POST", `/v1/runs/${run.id}/cancel`, { headers });
    expect((await json(cancelled)).run.status).toBe("cancelled");
    await agentSawCancel(headers, agent.id, key);
  });
});

describe("runs: background runs and wait", () => {
  it("starts with 202, then wait answers 200 with the agent's invoke/v1 answer", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const started = await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body: userMessage("4 100") });
    expect(started.status).toBe(202);
    const { run } = await json(started);
    expect(run).toMatchObject({ status: "running", agentId: agent.id, endedAt: null });
    expect(run.id).toMatch(/^run_/);

    const soon = await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=0`, { headers });
    expect(soon.status).toBe(202);
    expect((await json(soon)).run.status).toBe("running");

    const waited = await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { headers });
    expect(waited.status).toBe(200);
    expect(await json(waited)).toMatchObject({
      run: { id: run.id, status: "succeeded" },
      response: { output: { text: "counted 4" } },
    });
    const all = await collectSse(await call("GET", `/v1/runs/${run.id}/events`, { headers }));
    expect(ids(all)).toEqual(range(1, 5));
  });

  it("records a run whose agent fails before streaming, and wait reports the error", async () => {
    const { headers, agent } = await agentRunning(modules.ANSWERS_500);
    const { run } = await json(await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body: userMessage("x") }));
    const waited = await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { headers });
    expect(waited.status).toBe(200);
    expect(await json(waited)).toMatchObject({
      run: { status: "failed", errorCode: "upstream_error" },
      error: { code: "upstream_error" },
    });
  });

  it("rejects a wait longer than 60 s and a malformed event id with 400", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const { run } = await json(
      await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body: userMessage("1 0") }),
    );
    await expectProblem(
      await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=61`, { headers }),
      400,
      "validation_failed",
    );
    await expectProblem(
      await call("GET", `/v1/runs/${run.id}/events`, { headers: { ...headers, "last-event-id": "three" } }),
      400,
      "validation_failed",
    );
    await expectProblem(await call("GET", `/v1/runs/${run.id}/events?after=-1`, { headers }), 400, "validation_failed");
  });
});

describe("runs: limits", () => {
  it("fails a run that reaches 10,000 events with run_event_limit, its last event the terminal error", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("10050 0") });
    const live = await collectSse(res);
    expect(live).toHaveLength(10_000);
    expect(live.at(-1)).toMatchObject({ id: "10000", event: "error", data: { code: "run_event_limit" } });
    const run = await untilEnded(headers, res.headers.get("x-run-id")!);
    expect(run).toMatchObject({ status: "failed", errorCode: "run_event_limit" });
  });
});

describe("runs: size limit and comments", () => {
  it("fails a run whose events pass 16 MiB with run_size_limit", async () => {
    const { headers, agent } = await agentRunning(modules.BIG_EVENTS);
    // 40 events of 512 KiB: 20 MiB.
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("40 524288") });
    const live = await collectSse(res);
    expect(live.at(-1)).toMatchObject({ event: "error", data: { code: "run_size_limit" } });
    expect(live.length).toBeLessThan(33);
    const run = await untilEnded(headers, res.headers.get("x-run-id")!);
    expect(run).toMatchObject({ status: "failed", errorCode: "run_size_limit" });
  });

  it("relays `: ping` comments without numbering or recording them", async () => {
    const { headers, agent } = await agentRunning(modules.BIG_EVENTS);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("3 10") });
    const live = await collectSse(res);
    expect(live.map((e) => [e.id, e.event])).toEqual([
      ["1", "delta"],
      ["2", "delta"],
      ["3", "delta"],
      ["4", "done"],
    ]);
    const replay = await collectSse(await call("GET", `/v1/runs/${res.headers.get("x-run-id")}/events`, { headers }));
    expect(ids(replay)).toEqual([1, 2, 3, 4]);
  });
});

describe("runs: tenant isolation", () => {
  it("answers 404 to another user on every run route, and for an unknown or malformed run id", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const { run } = await json(
      await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body: userMessage("3 50") }),
    );
    const stranger = await newUser();
    for (const [method, path] of [
      ["GET", `/v1/runs/${run.id}`],
      ["GET", `/v1/runs/${run.id}/events`],
      ["GET", `/v1/runs/${run.id}/wait?timeoutSeconds=0`],
      ["POST", `/v1/runs/${run.id}/cancel`],
      ["GET", "/v1/runs/run_00000000000000000000000000"],
      ["GET", "/v1/runs/not-a-run"],
    ] as const) {
      await expectProblem(await call(method, path, { headers: stranger.headers }), 404, "not_found");
    }
    await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/runs`, { headers: stranger.headers, body: userMessage("1 0") }),
      404,
      "not_found",
    );
    // The owner's run was not disturbed.
    expect((await json(await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { headers }))).run.status).toBe(
      "succeeded",
    );
  });
});

describe("runs: retention", () => {
  const stubOf = (runId: string) => env.RUNS.get(env.RUNS.idFromName(runId));
  const tablesOf = (runId: string) =>
    runInDurableObject(stubOf(runId), (_, state) =>
      state.storage.sql
        .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'")
        .toArray(),
    );

  it("deletes a run's storage when its alarm fires 24 hours after it ended", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("2 0") });
    await collectSse(res);
    const runId = res.headers.get("x-run-id")!;
    await untilEnded(headers, runId);

    // Not yet 24 hours: the alarm keeps the run.
    expect(await runDurableObjectAlarm(stubOf(runId))).toBe(true);
    expect((await runStatus(headers, runId)).status).toBe("succeeded");

    // The run ended 25 hours ago: the alarm deletes everything.
    await runInDurableObject(stubOf(runId), (instance, state) => {
      const row = state.storage.sql.exec<{ json: string }>("SELECT json FROM run").one();
      const stored = { ...JSON.parse(row.json), endedAt: Date.now() - 25 * 3600_000 };
      state.storage.sql.exec("UPDATE run SET json = ?", JSON.stringify(stored));
      (instance as unknown as { run: unknown }).run = stored;
      return state.storage.setAlarm(Date.now() + 60_000);
    });
    expect(await runDurableObjectAlarm(stubOf(runId))).toBe(true);
    await expectProblem(await call("GET", `/v1/runs/${runId}`, { headers }), 404, "not_found");
    expect(await tablesOf(runId)).toEqual([]);
  });

  it("leaves no storage behind for a run id that was never started", async () => {
    const { headers } = await newUser();
    const runId = "run_01m8000000000000000000zzzz";
    await expectProblem(await call("GET", `/v1/runs/${runId}`, { headers }), 404, "not_found");
    await expectProblem(await call("GET", `/v1/runs/${runId}/events`, { headers }), 404, "not_found");
    expect(await tablesOf(runId)).toEqual([]);
  });
});

describe("runs: the run's Durable Object makes its call (background and /stream)", () => {
  type Held = { spec: RunCall; attempted: boolean };
  /** The Durable Object's own storage of a background run (what its alarm reads after a restart). */
  type Internals = {
    record(run: RunStart): void;
    holdCall(spec: RunCall, attempted: boolean): void;
    heldCall(): Held | undefined;
  };
  const stubOf = (runId: string) => env.RUNS.get(env.RUNS.idFromName(runId));
  /** The call the run's Durable Object holds for its alarm (null once the run is closed). */
  const heldCall = (runId: string) =>
    runInDurableObject(stubOf(runId), (instance) => (instance as unknown as Internals).heldCall() ?? null);
  const untilClosed = (runId: string) =>
    waitFor(async () => ((await heldCall(runId)) === null ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: `run ${runId} to be closed by its Durable Object`,
    });

  /**
   * A real background call (started through the API, taken from its Durable Object while it runs,
   * then cancelled), to hand to a new run's Durable Object directly.
   */
  async function realCall(headers: Record<string, string>, agentId: string): Promise<RunCall> {
    const started = await call("POST", `/v1/agents/${agentId}/runs`, { headers, body: userMessage("lively x") });
    const { run } = await json(started);
    const held = await waitFor(async () => (await heldCall(run.id))?.spec, { what: "the held call" });
    await call("POST", `/v1/runs/${run.id}/cancel`, { headers });
    return held;
  }

  /** The call for a new run: its own id, its own message, and optionally a session's turn. */
  function callFor(spec: RunCall, runId: string, message: string, turn?: RunCall["sessionTurn"]) {
    return {
      call: { ...spec.call, runId, payload: JSON.stringify(userMessage(message)) },
      ...(turn ? { sessionTurn: turn } : {}),
    } satisfies RunCall;
  }

  function startOf(spec: RunCall, runId: string, deadlineInMs = 60_000): RunStart {
    const now = Date.now();
    return {
      id: runId,
      userId: spec.call.userId,
      agentId: spec.call.agentId,
      deploymentId: spec.call.deployment.id,
      createdAt: now,
      startedAt: now,
      deadline: now + deadlineInMs,
    };
  }

  /** Starts a turn of `sessionId` the way the gateway does, for a run to hold. */
  async function sessionTurn(spec: RunCall, sessionId: string) {
    const key: SessionKey = { userId: spec.call.userId, agentId: spec.call.agentId, sessionId };
    const keeper = env.SESSIONS.get(env.SESSIONS.idFromName(sessionObjectName(key)));
    const grant = await keeper.beginTurn(key, spec.call.deployment.id, { idleMs: 3_600_000, leaseMs: 600_000 }, null);
    if (grant.kind !== "granted") throw new Error(`no turn: ${grant.kind}`);
    return { key, turnId: grant.turnId };
  }

  const sessionOf = async (headers: Record<string, string>, agentId: string, sessionId: string) =>
    (await json(await call("GET", `/v1/agents/${agentId}/sessions/${sessionId}`, { headers }))).session;

  it("holds the call the gateway handed over, calls the agent from its alarm after the 202, and wait gets the answer", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const started = await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body: userMessage("3 200") });
    expect(started.status).toBe(202);
    const { run } = await json(started);

    // The gateway's request is over; the run's Durable Object holds the call and has made it.
    const held = await waitFor(async () => ((await heldCall(run.id))?.attempted ? await heldCall(run.id) : undefined), {
      intervalMs: 20,
      what: "the Durable Object to start the call",
    });
    expect(held?.spec.call).toMatchObject({
      runId: run.id,
      agentId: agent.id,
      deployment: { id: run.deploymentId },
      stream: true,
      payload: JSON.stringify(userMessage("3 200")),
    });
    // Only what the call needs: the deployment's sealed secrets stay in D1.
    expect(JSON.stringify(held)).not.toMatch(/ciphertext/i);

    const waited = await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { headers });
    expect(await json(waited)).toMatchObject({
      run: { status: "succeeded" },
      response: { output: { text: "counted 3" } },
    });
    const all = await collectSse(await call("GET", `/v1/runs/${run.id}/events`, { headers }));
    expect(ids(all)).toEqual(range(1, 4));

    // Closed: the call is dropped and the alarm keeps the record for its 24 hours.
    await untilClosed(run.id);
    const alarm = await runInDurableObject(stubOf(run.id), (_, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThan(Date.now() + 23 * 3_600_000);
  });

  it("makes a /stream run's call itself: its reader gone and no gateway request left, it records the run to its end", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const spec = await realCall(headers, agent.id);
    const runId = newId("run");
    // What the gateway does for /stream, minus the gateway: the object is handed the call directly.
    const opening = await (stubOf(runId) as unknown as RunRecorderApi).stream(
      startOf(spec, runId),
      callFor(spec, runId, "6 150"),
    );
    if (!("stream" in opening)) throw new Error(`no stream: ${JSON.stringify(opening)}`);
    const reader = opening.stream.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/^id: 1\nevent: delta\n/);
    await reader.cancel();

    expect(await untilEnded(headers, runId)).toMatchObject({ status: "succeeded" });
    const all = await collectSse(await call("GET", `/v1/runs/${runId}/events`, { headers }));
    expect(ids(all)).toEqual(range(1, 7));
    expect(all.at(-1)).toMatchObject({ event: "done", data: { output: { text: "counted 6" } } });
  });

  it("ends a /stream run whose object was restarted mid-run run_interrupted, without calling the agent again", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const spec = await realCall(headers, agent.id);
    const runId = newId("run");
    // What a restarted object finds: the run's record, running, and no driver in this instance.
    await runInDurableObject(stubOf(runId), async (instance) => {
      (instance as unknown as Internals).record(startOf(spec, runId));
      await instance.alarm!();
    });
    const run = await untilEnded(headers, runId);
    expect(run).toMatchObject({ status: "failed", errorCode: "run_interrupted" });
    const all = await collectSse(await call("GET", `/v1/runs/${runId}/events`, { headers }));
    expect(all.map((e) => [e.id, e.event, e.data.code])).toEqual([["1", "error", "run_interrupted"]]);
  });

  it("answers 503 when its Durable Object cannot take the run, and frees the session's turn uncounted", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const unavailable = {
      RUNS: {
        idFromName: (name: string) => env.RUNS.idFromName(name),
        get: () => ({
          startBackground: async () => {
            throw new Error("the Durable Object is unavailable");
          },
          get: async () => null,
        }),
      },
    };
    const body = { ...userMessage("1 0"), sessionId: "conv-503" };
    const refused = await callWithEnv(unavailable, "POST", `/v1/agents/${agent.id}/runs`, { headers, body });
    await expectProblem(refused, 503, "service_unavailable");
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(await sessionOf(headers, agent.id, "conv-503")).toMatchObject({ busy: false, turns: 0 });
    // The next turn is not told session_busy.
    expect((await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body })).status).toBe(202);
  });

  it("answers a /stream 503 when its Durable Object cannot take the run, and frees the session's turn uncounted", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const unavailable = {
      RUNS: {
        idFromName: (name: string) => env.RUNS.idFromName(name),
        get: () => ({
          wake: async () => {},
          stream: async () => {
            throw new Error("the Durable Object is unavailable");
          },
        }),
      },
    };
    const body = { ...userMessage("1 0"), sessionId: "conv-503-stream" };
    const refused = await callWithEnv(unavailable, "POST", `/v1/invoke/${agent.id}/stream`, { headers, body });
    await expectProblem(refused, 503, "service_unavailable");
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(refused.headers.get("x-run-id")).toMatch(/^run_/);
    expect(await sessionOf(headers, agent.id, "conv-503-stream")).toMatchObject({ busy: false, turns: 0 });
    const next = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body });
    expect(next.status).toBe(200);
    expect((await collectSse(next)).at(-1)).toMatchObject({ event: "done" });
  });

  it("answers 202 when its Durable Object took the run but the answer was lost: the run goes on once, holding the turn", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTED_STREAM);
    const answerLost = {
      RUNS: {
        idFromName: (name: string) => env.RUNS.idFromName(name),
        get: (id: DurableObjectId) => {
          const real = env.RUNS.get(id) as unknown as RunRecorderApi;
          return {
            startBackground: async (...args: Parameters<RunRecorderApi["startBackground"]>) => {
              await real.startBackground(...args);
              throw new Error("Network connection lost.");
            },
            get: (...args: Parameters<RunRecorderApi["get"]>) => real.get(...args),
          };
        },
      },
    };
    const body = { ...userMessage("2 300"), sessionId: "conv-lost" };
    const started = await callWithEnv(answerLost, "POST", `/v1/agents/${agent.id}/runs`, { headers, body });
    expect(started.status).toBe(202);
    const { run } = await json(started);
    // The run holds the session: a second turn now is the session's busy answer, not a second run.
    await expectProblem(await call("POST", `/v1/agents/${agent.id}/runs`, { headers, body }), 409, "session_busy");
    const waited = await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { headers });
    expect(await json(waited)).toMatchObject({ run: { status: "succeeded" } });
    await untilClosed(run.id);
    expect(await sessionOf(headers, agent.id, "conv-lost")).toMatchObject({ busy: false, turns: 1 });
  });

  it("holds a call whose body is larger than one stored value may be (2 MB) in parts, and the agent gets it whole", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const roomy = { TIER_LIMITS: JSON.stringify({ free: { invokeBodyBytes: 8 * 1024 * 1024 } }) };
    const key = crypto.randomUUID();
    // 3 MB of text, with characters outside the BMP (surrogate pairs) across the parts' edges.
    const padding = "é😀".repeat(1_000_000);
    const body = {
      messages: [
        { role: "user", content: padding },
        { role: "user", content: `lively ${key}` },
      ],
    };
    const started = await callWithEnv(roomy, "POST", `/v1/agents/${agent.id}/runs`, { headers, body });
    expect(started.status).toBe(202);
    const { run } = await json(started);
    const parts = await runInDurableObject(stubOf(run.id), (_, state) =>
      state.storage.sql
        .exec<{ bytes: number }>("SELECT length(CAST(part AS BLOB)) AS bytes FROM call_payload")
        .toArray(),
    );
    expect(parts.length).toBeGreaterThan(1);
    for (const { bytes } of parts) expect(bytes).toBeLessThanOrEqual(2_000_000);
    expect((await heldCall(run.id))?.spec.call.payload).toBe(JSON.stringify(body));
    // The agent parsed the body (it streams), and the stream is its: cancelling it reaches the agent.
    await waitFor(
      async () => {
        const first = await sseEvents(await call("GET", `/v1/runs/${run.id}/events?after=0`, { headers })).next();
        return first.value ? true : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 100, what: "the run's first event" },
    );
    await call("POST", `/v1/runs/${run.id}/cancel`, { headers });
    await agentSawCancel(headers, agent.id, key);
  });

  it("is measured and charged once", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    await deployAndActivate(user.headers, agent.id, { moduleCode: modules.COUNTED_STREAM });
    const userId = await userIdOf(user.subject);
    const { run } = await json(
      await call("POST", `/v1/agents/${agent.id}/runs`, { headers: user.headers, body: userMessage("2 50") }),
    );
    await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { headers: user.headers });
    const metered = await waitFor(
      async () => {
        const row = await env.DB.prepare("SELECT SUM(requests) AS n FROM billing_usage WHERE user_id = ?")
          .bind(userId)
          .first<{ n: number | null }>();
        return row?.n ? row.n : undefined;
      },
      { timeoutMs: 10_000, what: "the run to be metered" },
    );
    expect(metered).toBe(1);
    const events = await env.DB.prepare(
      "SELECT status, streaming FROM metrics_events WHERE user_id = ? AND source = 'gateway'",
    )
      .bind(userId)
      .all();
    expect(events.results).toHaveLength(1);
    expect(events.results[0]).toMatchObject({ status: "ok" });
  });

  it("ends the run timed_out at its deadline and aborts the agent", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const spec = await realCall(headers, agent.id);
    const runId = newId("run");
    const key = crypto.randomUUID();
    // A deadline 1.5 s away: the lively agent would go on forever.
    await (stubOf(runId) as unknown as RunRecorderApi).startBackground(
      startOf(spec, runId, 1_500),
      callFor(spec, runId, `lively ${key}`),
    );
    const run = await untilEnded(headers, runId);
    expect(run.status).toBe("timed_out");
    expect(run.endedAt - run.startedAt).toBeLessThan(5_000);
    await agentSawCancel(headers, agent.id, key);
  });

  it("after an interrupted attempt, the retried alarm ends the run run_interrupted without calling the agent again, and frees the session", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const spec = await realCall(headers, agent.id);
    const runId = newId("run");
    const turn = await sessionTurn(spec, "conv-crash");
    expect((await sessionOf(headers, agent.id, "conv-crash")).busy).toBe(true);
    // The state an alarm leaves when the object is reset mid-call: the call marked as made.
    await runInDurableObject(stubOf(runId), async (instance, state) => {
      const internals = instance as unknown as Internals;
      internals.record(startOf(spec, runId));
      internals.holdCall(callFor(spec, runId, "lively once", turn), true);
      await state.storage.setAlarm(Date.now() + 60_000);
    });
    expect(await runDurableObjectAlarm(stubOf(runId))).toBe(true);

    expect(await runStatus(headers, runId)).toMatchObject({ status: "failed", errorCode: "run_interrupted" });
    // No event from the agent: only the terminal error.
    const events = await collectSse(await call("GET", `/v1/runs/${runId}/events`, { headers }));
    expect(events.map((e) => [e.id, e.event, (e.data as { code?: string }).code])).toEqual([
      ["1", "error", "run_interrupted"],
    ]);
    const session = await sessionOf(headers, agent.id, "conv-crash");
    expect(session).toMatchObject({ busy: false, turns: 1 });
    expect(await heldCall(runId)).toBeNull();
  });

  it("a run whose setup keeps failing (a bad setting) ends run_start_failed, frees its session's turn uncounted and is not billed", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const spec = await realCall(headers, agent.id);
    const runId = newId("run");
    const turn = await sessionTurn(spec, "conv-setup");
    // Its own request id, so its measurement (there must be none) is told apart from realCall's.
    const held = callFor(spec, runId, "lively setup", turn);
    held.call.requestId = newId("request");
    await runInDurableObject(stubOf(runId), async (instance) => {
      const internals = instance as unknown as Internals & { env: typeof env; alarm(info: unknown): Promise<void> };
      internals.record(startOf(spec, runId));
      internals.holdCall(held, false);
      // The configuration no longer parses, and this is the alarm's last retry.
      internals.env = { ...env, TIER_LIMITS: "{ not json" };
      await internals.alarm({ retryCount: 3, isRetry: true });
    });
    expect(await runStatus(headers, runId)).toMatchObject({ status: "failed", errorCode: "run_start_failed" });
    expect(await sessionOf(headers, agent.id, "conv-setup")).toMatchObject({ busy: false, turns: 0 });
    expect(await heldCall(runId)).toBeNull();
    await drainUsageQueue();
    const measured = await env.DB.prepare("SELECT COUNT(*) AS n FROM metrics_events WHERE dedupe_key = ?")
      .bind(held.call.requestId)
      .first<{ n: number }>();
    expect(measured?.n).toBe(0);
  });

  it("a run cancelled before its alarm drove it never calls the agent, and its session turn is freed uncounted", async () => {
    const { headers, agent } = await agentRunning(modules.CANCEL_OBSERVER);
    const spec = await realCall(headers, agent.id);
    const runId = newId("run");
    const key = crypto.randomUUID();
    const turn = await sessionTurn(spec, "conv-early");
    await runInDurableObject(stubOf(runId), async (instance) => {
      // Held, its alarm not yet run: the cancel comes first.
      const internals = instance as unknown as Internals;
      internals.record(startOf(spec, runId));
      internals.holdCall(callFor(spec, runId, `lively ${key}`, turn), false);
      await (instance as unknown as RunRecorder).cancel(spec.call.userId);
    });
    expect(await runStatus(headers, runId)).toMatchObject({ status: "cancelled", errorCode: "cancelled" });
    await untilClosed(runId);
    expect(await sessionOf(headers, agent.id, "conv-early")).toMatchObject({ busy: false, turns: 0 });
    const events = await collectSse(await call("GET", `/v1/runs/${runId}/events`, { headers }));
    expect(events).toHaveLength(1);
    // The agent never saw this key: a stream it had opened would have been cancelled.
    const asked = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage(`cancelled? ${key}`) });
    expect((await json(asked)).output.text).toBe("false");
  });
});
