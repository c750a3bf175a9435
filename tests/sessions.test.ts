// Sessions: a request naming a `sessionId` is a turn of that session, kept by its SessionKeeper
// Durable Object (the real one runs in the test pool). The first turn pins the session to the
// active deployment; later turns stay there across deploys and rollbacks; one turn at a time
// (409 session_busy, released however the turn ends); an idle session expires and starts fresh;
// a pin that can no longer run is 409 session_deployment_gone; sessions are per tenant and agent.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sessionObjectName } from "../src/services/sessions/types";
import { sessionAgent as sessionAgentModule } from "./fixtures/modules";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userIdOf } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { collectSse, type SseEvent, sseEvents } from "./helpers/sse";
import { waitFor } from "./helpers/wait";

type Headers = Record<string, string>;

/** The session agent (fixtures/modules.ts): its streamed deltas come 100 ms apart. */
const sessionAgent = (tag: string) => sessionAgentModule(tag, { deltaGapMs: 100 });

const turnBody = (sessionId: string | undefined, content = "hello") => ({
  messages: [{ role: "user", content }],
  ...(sessionId === undefined ? {} : { sessionId }),
});

async function turn(headers: Headers, agentId: string, sessionId: string | undefined, content?: string) {
  return call("POST", `/v1/invoke/${agentId}`, { headers, body: turnBody(sessionId, content) });
}

async function answer(headers: Headers, agentId: string, sessionId?: string) {
  const res = await turn(headers, agentId, sessionId);
  if (res.status !== 200) throw new Error(`turn answered ${res.status}: ${await res.text()}`);
  return { text: (await json(res)).output.text as string, servedBy: res.headers.get("x-deployment-id") };
}

async function getSession(headers: Headers, agentId: string, sessionId: string) {
  const res = await call("GET", `/v1/agents/${agentId}/sessions/${encodeURIComponent(sessionId)}`, { headers });
  if (res.status !== 200) throw new Error(`GET session answered ${res.status}: ${await res.text()}`);
  return (await json(res)).session;
}

async function agentWith(tag: string) {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  const first = await deployAndActivate(user.headers, agent.id, { moduleCode: sessionAgent(tag) });
  return { ...user, agent, first };
}

/** Deploys a new version and waits until a call without a session is served by it. */
async function deployNew(headers: Headers, agentId: string, tag: string) {
  const d = await deployAndActivate(headers, agentId, { moduleCode: sessionAgent(tag) });
  await waitFor(async () => ((await answer(headers, agentId)).servedBy === d.id ? true : undefined), {
    timeoutMs: 5_000,
    what: `${tag} to serve`,
  });
  return d;
}

async function runEnded(headers: Headers, runId: string) {
  return waitFor(
    async () => {
      const { run } = await json(await call("GET", `/v1/runs/${runId}`, { headers }));
      return run.status === "running" ? undefined : run;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: `run ${runId} to end` },
  );
}

describe("sessions: pinned to the deployment of their first turn", () => {
  it("stays on its deployment across a new deploy and a rollback; a new session takes the active one", async () => {
    const { headers, agent, first } = await agentWith("v1");
    expect(await answer(headers, agent.id, "conv-a")).toEqual({ text: "v1 conv-a", servedBy: first.id });

    const second = await deployNew(headers, agent.id, "v2");
    // The old session stays on v1; a new one and a call without a session go to v2.
    expect(await answer(headers, agent.id, "conv-a")).toEqual({ text: "v1 conv-a", servedBy: first.id });
    expect(await answer(headers, agent.id, "conv-b")).toEqual({ text: "v2 conv-b", servedBy: second.id });
    expect(await answer(headers, agent.id)).toEqual({ text: "v2 -", servedBy: second.id });

    // Roll back to v1: conv-b stays on v2, streamed too.
    const rollback = await call("POST", `/v1/agents/${agent.id}/deployments/${first.id}/activate`, { headers });
    expect(rollback.status).toBe(200);
    await waitFor(async () => ((await answer(headers, agent.id)).servedBy === first.id ? true : undefined), {
      timeoutMs: 5_000,
      what: "the rollback to serve",
    });
    expect(await answer(headers, agent.id, "conv-b")).toEqual({ text: "v2 conv-b", servedBy: second.id });
    const streamed = await call("POST", `/v1/invoke/${agent.id}/stream`, {
      headers,
      body: turnBody("conv-b", "count 2"),
    });
    expect(streamed.headers.get("x-deployment-id")).toBe(second.id);
    expect((await collectSse(streamed)).at(-1)).toMatchObject({
      event: "done",
      data: { output: { text: "v2 conv-b" } },
    });

    const a = await getSession(headers, agent.id, "conv-a");
    expect(a).toMatchObject({ id: "conv-a", agentId: agent.id, deploymentId: first.id, turns: 2, busy: false });
    expect(a.expiresAt).toBe(a.lastUsedAt + 3_600_000);
    expect(a.createdAt).toBeLessThanOrEqual(a.lastUsedAt);
    expect(await getSession(headers, agent.id, "conv-b")).toMatchObject({ deploymentId: second.id, turns: 3 });
  });

  it("POST …/sessions makes a session pinned to the active deployment; its turns stay there after a deploy", async () => {
    const { headers, agent, first } = await agentWith("v1");
    const res = await call("POST", `/v1/agents/${agent.id}/sessions`, { headers });
    expect(res.status).toBe(201);
    const { session } = await json(res);
    expect(session).toMatchObject({ agentId: agent.id, deploymentId: first.id, turns: 0, busy: false });
    expect(session.id).toMatch(/^ses_[0-9a-z]{26}$/);
    expect(session.expiresAt).toBe(session.createdAt + 3_600_000);

    await deployNew(headers, agent.id, "v2");
    expect(await answer(headers, agent.id, session.id)).toEqual({ text: `v1 ${session.id}`, servedBy: first.id });
    expect((await getSession(headers, agent.id, session.id)).turns).toBe(1);
  });

  it("DELETE ends the session: it is gone, and the same id then starts fresh on the active deployment", async () => {
    const { headers, agent, first } = await agentWith("v1");
    await answer(headers, agent.id, "conv-end");
    const second = await deployNew(headers, agent.id, "v2");
    const del = await call("DELETE", `/v1/agents/${agent.id}/sessions/conv-end`, { headers });
    expect(del.status).toBe(204);
    await expectProblem(await call("GET", `/v1/agents/${agent.id}/sessions/conv-end`, { headers }), 404, "not_found");
    await expectProblem(
      await call("DELETE", `/v1/agents/${agent.id}/sessions/conv-end`, { headers }),
      404,
      "not_found",
    );
    expect(await answer(headers, agent.id, "conv-end")).toEqual({ text: "v2 conv-end", servedBy: second.id });
    expect(await getSession(headers, agent.id, "conv-end")).toMatchObject({ deploymentId: second.id, turns: 1 });
    expect(second.id).not.toBe(first.id);
  });
});

describe("sessions: one turn at a time", () => {
  it("a second concurrent turn is 409 session_busy; the session is free as soon as the first answers", async () => {
    const { headers, agent } = await agentWith("v1");
    const slow = turn(headers, agent.id, "conv-busy", "slow 800");
    await waitFor(
      async () => ((await getSession(headers, agent.id, "conv-busy").catch(() => null))?.busy ? true : undefined),
      {
        timeoutMs: 3_000,
        intervalMs: 20,
        what: "the first turn to hold the session",
      },
    );
    const busy = await turn(headers, agent.id, "conv-busy");
    const problem = await expectProblem(busy, 409, "session_busy");
    expect(busy.headers.get("retry-after")).toBe("1");
    expect(problem.detail).toContain("conv-busy");
    // Another session of the same agent, and a call without a session, are not held up.
    expect((await turn(headers, agent.id, "conv-other")).status).toBe(200);
    expect((await turn(headers, agent.id, undefined)).status).toBe(200);

    expect((await slow).status).toBe(200);
    expect((await turn(headers, agent.id, "conv-busy")).status).toBe(200);
    // The refused turn did not count: the slow one and the last one did.
    expect(await getSession(headers, agent.id, "conv-busy")).toMatchObject({ turns: 2, busy: false });
  });

  it("of four turns that arrive together on a new session, exactly one is admitted", async () => {
    const { headers, agent } = await agentWith("v1");
    const answers = await Promise.all(
      Array.from({ length: 4 }, () => turn(headers, agent.id, "conv-race", "slow 300")),
    );
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 409, 409, 409]);
    for (const res of answers.filter((r) => r.status === 409)) await expectProblem(res, 409, "session_busy");
    expect(await getSession(headers, agent.id, "conv-race")).toMatchObject({ turns: 1, busy: false });
  });

  it("a streamed turn holds the session until its done event, and the next turn may follow at once", async () => {
    const { headers, agent } = await agentWith("v1");
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: turnBody("conv-s", "count 3") });
    const events = sseEvents(res);
    expect((await events.next()).value).toMatchObject({ id: "1", event: "delta" });
    await expectProblem(await turn(headers, agent.id, "conv-s"), 409, "session_busy");
    const rest: SseEvent[] = [];
    for await (const e of events) rest.push(e);
    expect(rest.at(-1)!.event).toBe("done");
    expect((await turn(headers, agent.id, "conv-s")).status).toBe(200);
  });

  it("a stream whose client disconnects holds the session until the run ends, then frees it", async () => {
    const { headers, agent } = await agentWith("v1");
    const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: turnBody("conv-d", "count 6") });
    const runId = res.headers.get("x-run-id")!;
    for await (const _ of sseEvents(res)) break; // the client goes away after the first event
    await expectProblem(await turn(headers, agent.id, "conv-d"), 409, "session_busy");
    expect((await runEnded(headers, runId)).status).toBe("succeeded");
    expect((await turn(headers, agent.id, "conv-d")).status).toBe(200);
    expect((await getSession(headers, agent.id, "conv-d")).turns).toBe(2);
  });

  it("a stream that fails, and a run that is cancelled, free the session", async () => {
    const { headers, agent } = await agentWith("v1");
    const failed = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: turnBody("conv-f", "fail") });
    expect((await collectSse(failed)).at(-1)!.event).toBe("error");
    expect((await turn(headers, agent.id, "conv-f")).status).toBe(200);

    const long = await call("POST", `/v1/invoke/${agent.id}/stream`, {
      headers,
      body: turnBody("conv-f", "count 100"),
    });
    const runId = long.headers.get("x-run-id")!;
    const events = sseEvents(long);
    await events.next();
    await expectProblem(await turn(headers, agent.id, "conv-f"), 409, "session_busy");
    const cancelled = await call("POST", `/v1/runs/${runId}/cancel`, { headers });
    expect((await json(cancelled)).run.status).toBe("cancelled");
    // Well before the turn's lease (over a minute) would free it.
    await waitFor(async () => ((await turn(headers, agent.id, "conv-f")).status === 200 ? true : undefined), {
      timeoutMs: 3_000,
      what: "the cancelled turn to release the session",
    });
  });

  it("a background run of a session holds it until the run ends", async () => {
    const { headers, agent } = await agentWith("v1");
    const started = await call("POST", `/v1/agents/${agent.id}/runs`, {
      headers,
      body: turnBody("conv-bg", "count 3"),
    });
    expect(started.status).toBe(202);
    const { run } = await json(started);
    await expectProblem(await turn(headers, agent.id, "conv-bg"), 409, "session_busy");
    const waited = await call("GET", `/v1/runs/${run.id}/wait?timeoutSeconds=10`, { headers });
    expect((await json(waited)).response).toEqual({ output: { text: "v1 conv-bg" } });
    await waitFor(async () => ((await turn(headers, agent.id, "conv-bg")).status === 200 ? true : undefined), {
      timeoutMs: 3_000,
      what: "the background run to release the session",
    });
  });
});

describe("sessions: expiry and deployments that are gone", () => {
  const tiny = { TIER_LIMITS: JSON.stringify({ free: { sessionIdleSeconds: 1 } }) };

  it("an expired session starts fresh on the active deployment, and its alarm deletes its storage", async () => {
    const { headers, agent, subject, first } = await agentWith("v1");
    const body = turnBody("conv-idle");
    const t1 = await callWithEnv(tiny, "POST", `/v1/invoke/${agent.id}`, { headers, body });
    expect(t1.headers.get("x-deployment-id")).toBe(first.id);
    const before = await getSession(headers, agent.id, "conv-idle");
    expect(before.expiresAt - before.lastUsedAt).toBe(1000);

    const second = await deployNew(headers, agent.id, "v2");
    const stub = env.SESSIONS.get(
      env.SESSIONS.idFromName(
        sessionObjectName({ userId: await userIdOf(subject), agentId: agent.id, sessionId: "conv-idle" }),
      ),
    );
    const stored = () => runInDurableObject(stub, (_o, state) => state.storage.kv.get("session") ?? null);
    expect(await stored()).not.toBeNull();
    await new Promise((r) => setTimeout(r, Math.max(0, before.expiresAt - Date.now()) + 100));
    await runDurableObjectAlarm(stub);
    expect(await stored()).toBeNull();
    await expectProblem(await call("GET", `/v1/agents/${agent.id}/sessions/conv-idle`, { headers }), 404, "not_found");

    const t2 = await callWithEnv(tiny, "POST", `/v1/invoke/${agent.id}`, { headers, body });
    expect(t2.headers.get("x-deployment-id")).toBe(second.id);
    const after = await getSession(headers, agent.id, "conv-idle");
    expect(after).toMatchObject({ deploymentId: second.id, turns: 1 });
    expect(after.createdAt).toBeGreaterThan(before.createdAt);
  });

  it("a session idle past its TTL starts fresh even before its alarm has run", async () => {
    const { headers, agent } = await agentWith("v1");
    const body = turnBody("conv-lazy");
    await callWithEnv(tiny, "POST", `/v1/invoke/${agent.id}`, { headers, body });
    const second = await deployNew(headers, agent.id, "v2");
    await new Promise((r) => setTimeout(r, 1100));
    const t2 = await callWithEnv(tiny, "POST", `/v1/invoke/${agent.id}`, { headers, body });
    expect(t2.headers.get("x-deployment-id")).toBe(second.id);
  });

  it("a pin whose code was removed by retention is 409 session_deployment_gone and does not hold the session", async () => {
    const { headers, agent, first } = await agentWith("v1");
    await answer(headers, agent.id, "conv-gone");
    await deployNew(headers, agent.id, "v2");
    await env.DB.prepare("UPDATE deployments SET script_removed_at = ? WHERE id = ?").bind(Date.now(), first.id).run();
    const problem = await expectProblem(await turn(headers, agent.id, "conv-gone"), 409, "session_deployment_gone");
    expect(problem.deploymentId).toBe(first.id);
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: turnBody("conv-gone") }),
      409,
      "session_deployment_gone",
    );
    expect(await getSession(headers, agent.id, "conv-gone")).toMatchObject({ busy: false, turns: 1 });
    // Ending it lets the same id start again on the active deployment.
    expect((await call("DELETE", `/v1/agents/${agent.id}/sessions/conv-gone`, { headers })).status).toBe(204);
    expect((await turn(headers, agent.id, "conv-gone")).status).toBe(200);
  });

  it("a disabled agent: an existing session is 409 session_deployment_gone, a new one agent_disabled", async () => {
    const { headers, agent } = await agentWith("v1");
    await answer(headers, agent.id, "conv-dis");
    expect((await call("POST", `/v1/agents/${agent.id}/disable`, { headers })).status).toBe(200);
    await expectProblem(await turn(headers, agent.id, "conv-dis"), 409, "session_deployment_gone");
    await expectProblem(await turn(headers, agent.id, "conv-new"), 409, "agent_disabled");
    await expectProblem(await call("POST", `/v1/agents/${agent.id}/sessions`, { headers }), 409, "agent_disabled");
  });
});

describe("sessions: tenants, agents and bad input", () => {
  it("two tenants (and two agents) using the same sessionId string never share a session", async () => {
    const owner = await agentWith("owner");
    const other = await agentWith("other");
    await answer(owner.headers, owner.agent.id, "shared");
    await answer(owner.headers, owner.agent.id, "shared");
    expect(await answer(other.headers, other.agent.id, "shared")).toEqual({
      text: "other shared",
      servedBy: other.first.id,
    });
    expect(await getSession(other.headers, other.agent.id, "shared")).toMatchObject({ turns: 1 });
    expect(await getSession(owner.headers, owner.agent.id, "shared")).toMatchObject({ turns: 2 });
    // The stranger cannot see, end or use the owner's session (a 404, as for a session that does not exist).
    for (const method of ["GET", "DELETE"]) {
      await expectProblem(
        await call(method, `/v1/agents/${owner.agent.id}/sessions/shared`, { headers: other.headers }),
        404,
        "not_found",
      );
    }
    await expectProblem(await turn(other.headers, owner.agent.id, "shared"), 404, "not_found");
    await expectProblem(
      await call("POST", `/v1/agents/${owner.agent.id}/sessions`, { headers: other.headers }),
      404,
      "not_found",
    );
    // A second agent of the owner's with the same session id has its own session.
    const second = await createAgent(owner.headers);
    await deployAndActivate(owner.headers, second.id, { moduleCode: sessionAgent("second") });
    expect((await answer(owner.headers, second.id, "shared")).text).toBe("second shared");
    expect(await getSession(owner.headers, second.id, "shared")).toMatchObject({ turns: 1 });
    expect(await getSession(owner.headers, owner.agent.id, "shared")).toMatchObject({ turns: 2 });
  });

  it("bad input is a 400 problem; an unknown session or agent a 404", async () => {
    const { headers, agent, subject } = await agentWith("v1");
    const unknownField = await call("POST", `/v1/agents/${agent.id}/sessions`, { headers, body: { pin: "dep_x" } });
    expect((await expectProblem(unknownField, 400, "validation_failed")).errors[0].location).toBe("body.pin");
    const tooLong = "x".repeat(201);
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/sessions/${tooLong}`, { headers }),
      400,
      "validation_failed",
    );
    await expectProblem(await turn(headers, agent.id, tooLong), 400, "validation_failed");
    await expectProblem(await turn(headers, agent.id, ""), 400, "validation_failed");
    await expectProblem(await call("GET", `/v1/agents/${agent.id}/sessions/never-used`, { headers }), 404, "not_found");
    await expectProblem(
      await call("GET", "/v1/agents/agt_00000000000000000000000000/sessions/x", { headers }),
      404,
      "not_found",
    );
    // Reading a session that never existed leaves nothing behind.
    const stub = env.SESSIONS.get(
      env.SESSIONS.idFromName(
        sessionObjectName({ userId: await userIdOf(subject), agentId: agent.id, sessionId: "never-used" }),
      ),
    );
    expect(await runInDurableObject(stub, (_o, state) => [...state.storage.kv.list()].length)).toBe(0);
  });
});
