// Runs end to end: real HTTP against `wrangler dev`, with the RunRecorder Durable Object running
// as it does there. A stream read to event 3 and dropped resumes at 4 with Last-Event-ID; a run
// finishes with nobody connected; cancel stops the agent (it observes the abort); a background run
// (driven by its Durable Object's alarm) is waited for, cancelled, and holds its session's turn
// until it ends; ids stay strictly increasing for a burst; a stranger gets 404 on every run route.
import { beforeAll, describe, expect, it } from "vitest";
import { readSse, type SseEvent } from "../../scripts/lib/sse.ts";
import { api, expectJson, expectProblem, newUser, type User, waitFor } from "./harness";

/**
 * The last message is "<mode> <arg>":
 * - "count <n>": deltas "1" … "n", 100 ms apart, then done ("burst <n>": all in one chunk);
 * - "lively <key>": a delta every 100 ms until its stream is cancelled;
 * - "cancelled? <key>": JSON, "true" once the stream opened with that key was cancelled.
 */
const RUNS_AGENT = `
const enc = new TextEncoder();
const ev = (name, data) => "event: " + name + "\\ndata: " + JSON.stringify(data) + "\\n\\n";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cancelled = new Set();
export default {
  async fetch(req) {
    if (req.method === "GET") return new Response("ok");
    const [mode, arg] = (await req.json()).messages.at(-1).content.split(" ");
    if (mode === "cancelled?") return Response.json({ output: { text: String(cancelled.has(arg)) } });
    const headers = { "content-type": "text/event-stream" };
    if (mode === "burst") {
      let all = "";
      for (let i = 1; i <= Number(arg); i++) all += ev("delta", { text: String(i) });
      return new Response(all + ev("done", { output: { text: "burst" } }), { headers });
    }
    let i = 0;
    return new Response(new ReadableStream({
      async pull(c) {
        i++;
        if (mode === "count" && i > Number(arg)) { c.enqueue(enc.encode(ev("done", { output: { text: "counted " + arg } }))); c.close(); return; }
        await sleep(100);
        c.enqueue(enc.encode(ev("delta", { text: String(i) })));
      },
      cancel() { cancelled.add(arg); },
    }, { highWaterMark: 0 }), { headers });
  },
};`;

const say = (content: string) => ({ messages: [{ role: "user", content }] });
type Run = { id: string; agentId: string; status: string; endedAt: number | null; errorCode?: string };

let owner: User;
let agentId: string;

beforeAll(async () => {
  owner = await newUser("runs-owner");
  ({
    agent: { id: agentId },
  } = await expectJson<{ agent: { id: string } }>(
    await api("POST", "/v1/agents", { user: owner, body: { name: `runs-${crypto.randomUUID().slice(0, 8)}` } }),
    201,
  ));
  const { deployment } = await expectJson<{ deployment: { id: string } }>(
    await api("POST", `/v1/agents/${agentId}/deploy`, { user: owner, body: { moduleCode: RUNS_AGENT } }),
    202,
  );
  await waitFor("the runs agent to become active", async () => {
    const res = await api("GET", `/v1/agents/${agentId}/deployments/${deployment.id}`, { user: owner });
    const { deployment: d } = await expectJson<{ deployment: { status: string; errorMessage: string | null } }>(
      res,
      200,
    );
    if (d.status === "failed") throw new Error(`deploy failed: ${d.errorMessage}`);
    return d.status === "active" ? true : undefined;
  });
});

async function collect(res: Response): Promise<SseEvent[]> {
  expect(res.status).toBe(200);
  const out: SseEvent[] = [];
  for await (const e of readSse(res.body!)) out.push(e);
  return out;
}

const ids = (events: SseEvent[]) => events.map((e) => Number(e.id));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function getRun(runId: string, user = owner): Promise<Run> {
  return (await expectJson<{ run: Run }>(await api("GET", `/v1/runs/${runId}`, { user }), 200)).run;
}

describe("runs over HTTP", () => {
  it("resumes a dropped stream after Last-Event-ID 3 at event 4, no duplicate, no gap, ending with done", async () => {
    const abort = new AbortController();
    const res = await api("POST", `/v1/invoke/${agentId}/stream`, {
      user: owner,
      body: say("count 8"),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    const runId = res.headers.get("x-run-id")!;
    expect(runId).toMatch(/^run_/);
    const first: SseEvent[] = [];
    for await (const e of readSse(res.body!)) {
      first.push(e);
      if (e.id === "3") break;
    }
    abort.abort(); // the connection is dropped
    expect(ids(first)).toEqual([1, 2, 3]);

    const resumed = await collect(
      await api("GET", `/v1/runs/${runId}/events`, { user: owner, headers: { "last-event-id": "3" } }),
    );
    expect(ids(resumed)).toEqual(range(4, 9));
    expect(resumed.slice(0, -1).map((e) => JSON.parse(e.data).text)).toEqual(["4", "5", "6", "7", "8"]);
    expect(resumed.at(-1)!.event).toBe("done");
    expect((await getRun(runId)).status).toBe("succeeded");
  });

  it("finishes a run with nobody connected, and replays it whole", async () => {
    const abort = new AbortController();
    const res = await api("POST", `/v1/invoke/${agentId}/stream`, {
      user: owner,
      body: say("count 5"),
      signal: abort.signal,
    });
    const runId = res.headers.get("x-run-id")!;
    for await (const _ of readSse(res.body!)) break;
    abort.abort();
    const run = await waitFor(`run ${runId} to end`, async () => {
      const r = await getRun(runId);
      return r.status === "running" ? undefined : r;
    });
    expect(run.status).toBe("succeeded");
    const all = await collect(await api("GET", `/v1/runs/${runId}/events?after=0`, { user: owner }));
    expect(ids(all)).toEqual(range(1, 6));
    expect(JSON.parse(all.at(-1)!.data)).toEqual({ output: { text: "counted 5" } });
  });

  it("keeps ids strictly increasing for hundreds of events emitted in the same millisecond", async () => {
    const res = await api("POST", `/v1/invoke/${agentId}/stream`, { user: owner, body: say("burst 500") });
    const live = await collect(res);
    expect(ids(live)).toEqual(range(1, 501));
    const replay = await collect(await api("GET", `/v1/runs/${res.headers.get("x-run-id")}/events`, { user: owner }));
    expect(ids(replay)).toEqual(range(1, 501));
  });

  it("cancels a run: the agent observes the abort and the run ends cancelled; a second cancel is 409", async () => {
    const key = crypto.randomUUID();
    const res = await api("POST", `/v1/invoke/${agentId}/stream`, { user: owner, body: say(`lively ${key}`) });
    const runId = res.headers.get("x-run-id")!;
    const events = readSse(res.body!);
    expect((await events.next()).value?.id).toBe("1");

    const { run } = await expectJson<{ run: Run }>(await api("POST", `/v1/runs/${runId}/cancel`, { user: owner }), 200);
    expect(run).toMatchObject({ status: "cancelled", errorCode: "cancelled" });
    const rest: SseEvent[] = [];
    for await (const e of events) rest.push(e);
    expect(rest.at(-1)).toMatchObject({ event: "error" });
    expect(JSON.parse(rest.at(-1)!.data).code).toBe("cancelled");
    await waitFor("the agent to observe the cancel", async () => {
      const answer = await expectJson<{ output: { text: string } }>(
        await api("POST", `/v1/invoke/${agentId}`, { user: owner, body: say(`cancelled? ${key}`) }),
        200,
      );
      return answer.output.text === "true" ? true : undefined;
    });
    await expectProblem(await api("POST", `/v1/runs/${runId}/cancel`, { user: owner }), 409, "run_ended");
  });

  it("runs in the background: 202, then wait answers 200 with the agent's answer", async () => {
    const { run } = await expectJson<{ run: Run }>(
      await api("POST", `/v1/agents/${agentId}/runs`, { user: owner, body: say("count 3") }),
      202,
    );
    expect(run.status).toBe("running");
    const waited = await expectJson<{ run: Run; response: unknown }>(
      await api("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { user: owner }),
      200,
    );
    expect(waited).toMatchObject({
      run: { id: run.id, status: "succeeded" },
      response: { output: { text: "counted 3" } },
    });
  });

  it("drives a background run from its Durable Object: cancel aborts the agent, which observes it, and wait reports cancelled", async () => {
    const key = crypto.randomUUID();
    const { run } = await expectJson<{ run: Run }>(
      await api("POST", `/v1/agents/${agentId}/runs`, { user: owner, body: say(`lively ${key}`) }),
      202,
    );
    // Events are recorded with nobody attached: the run's Durable Object is calling the agent.
    await waitFor("the background run's second event", async () => {
      const abort = new AbortController();
      const res = await api("GET", `/v1/runs/${run.id}/events?after=1`, { user: owner, signal: abort.signal });
      for await (const e of readSse(res.body!)) {
        abort.abort();
        return e.id === "2" ? true : undefined;
      }
      return undefined;
    });
    const cancelled = await expectJson<{ run: Run }>(
      await api("POST", `/v1/runs/${run.id}/cancel`, { user: owner }),
      200,
    );
    expect(cancelled.run).toMatchObject({ status: "cancelled", errorCode: "cancelled" });
    await waitFor("the agent to observe the cancel", async () => {
      const answer = await expectJson<{ output: { text: string } }>(
        await api("POST", `/v1/invoke/${agentId}`, { user: owner, body: say(`cancelled? ${key}`) }),
        200,
      );
      return answer.output.text === "true" ? true : undefined;
    });
    const waited = await expectJson<{ run: Run; error: { code: string } }>(
      await api("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=5`, { user: owner }),
      200,
    );
    expect(waited).toMatchObject({ run: { status: "cancelled" }, error: { code: "cancelled" } });
  });

  it("a background run of a session holds its turn until the run ends, then releases it", async () => {
    const sessionId = `conv-${crypto.randomUUID().slice(0, 8)}`;
    const { run } = await expectJson<{ run: Run }>(
      await api("POST", `/v1/agents/${agentId}/runs`, { user: owner, body: { ...say("count 5"), sessionId } }),
      202,
    );
    await expectProblem(
      await api("POST", `/v1/invoke/${agentId}`, { user: owner, body: { ...say("cancelled? x"), sessionId } }),
      409,
      "session_busy",
    );
    await expectJson(await api("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=20`, { user: owner }), 200);
    await waitFor("the background run to release the session", async () => {
      const res = await api("POST", `/v1/invoke/${agentId}`, {
        user: owner,
        body: { ...say("cancelled? x"), sessionId },
      });
      return res.status === 200 ? true : undefined;
    });
  });

  it("answers a stranger 404 on every run route", async () => {
    const { run } = await expectJson<{ run: Run }>(
      await api("POST", `/v1/agents/${agentId}/runs`, { user: owner, body: say("count 1") }),
      202,
    );
    const stranger = await newUser("runs-stranger");
    for (const [method, path] of [
      ["GET", `/v1/runs/${run.id}`],
      ["GET", `/v1/runs/${run.id}/events`],
      ["GET", `/v1/runs/${run.id}/wait?timeoutSeconds=0`],
      ["POST", `/v1/runs/${run.id}/cancel`],
    ] as const) {
      await expectProblem(await api(method, path, { user: stranger }), 404, "not_found");
    }
    expect((await getRun(run.id)).agentId).toBe(agentId);
  });
});
