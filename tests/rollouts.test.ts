// Canary rollouts (issue 14 §2) in the Workers runtime with real D1, the real usage queue and
// agents run by the Worker Loader: the split by session, the evaluator aborting a failing candidate
// and advancing then completing a healthy one (the clock is injected: no waiting for stages),
// promote and abort by the user, one rollout per agent, tenant isolation and input validation.
// The evaluator sees every running rollout of the database, so each test checks its own
// rollout's state, never the evaluator's counts.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { evaluateRollouts } from "../src/services/rollouts/evaluate";
import { goesToCandidate } from "../src/services/rollouts/split";
import * as modules from "./fixtures/modules";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { recordingD1 } from "./helpers/d1-faults";
import {
  createAgent,
  deploy,
  deployAndActivate,
  expectPointerInvariant,
  getDeployment,
  type Headers,
  userMessage,
  waitUntilSettled,
} from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { waitFor } from "./helpers/wait";

const db = () => createDb(env.DB);

type Rollout = {
  id: string;
  status: "running" | "completed" | "aborted";
  stageIndex: number;
  currentPercent: number | null;
  candidateDeploymentId: string;
  baselineDeploymentId: string;
  endReason: string | null;
  stageStartedAt: number;
  lastEvaluation: null | {
    decision: string;
    candidate: { requests: number; errors: number; errorRatePct: number | null; p95Ms: number | null };
    baseline: { requests: number; errors: number };
  };
};

/** An agent with v1 active and a second deployment `ready` (a manual deploy) of the given code. */
async function agentWithCandidate(candidateCode = modules.fixedAnswer("v2")) {
  const { headers } = await newUser();
  const agent = await createAgent(headers);
  const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
  const v2 = await deploy(headers, agent.id, { moduleCode: candidateCode, activation: "manual" });
  expect((await waitUntilSettled(headers, agent.id, v2.id)).status).toBe("ready");
  return { headers, agentId: agent.id, v1: v1.id, v2: v2.id };
}

async function startRollout(headers: Headers, agentId: string, body: Record<string, unknown>) {
  return call("POST", `/v1/agents/${agentId}/rollouts`, { headers, body });
}

async function started(headers: Headers, agentId: string, body: Record<string, unknown>): Promise<Rollout> {
  const res = await startRollout(headers, agentId, body);
  if (res.status !== 201) throw new Error(`rollout answered ${res.status}: ${await res.text()}`);
  return (await json(res)).rollout;
}

async function getRollout(headers: Headers, agentId: string, rolloutId: string): Promise<Rollout> {
  const res = await call("GET", `/v1/agents/${agentId}/rollouts/${rolloutId}`, { headers });
  expect(res.status).toBe(200);
  return (await json(res)).rollout;
}

/** Which deployment served a call of this session (the header), and the HTTP status. */
async function servedBy(headers: Headers, agentId: string, sessionId?: string) {
  const body = { ...userMessage("which version?"), ...(sessionId ? { sessionId } : {}) };
  const res = await call("POST", `/v1/invoke/${agentId}`, { headers, body });
  await res.text();
  return { status: res.status, deploymentId: res.headers.get("x-deployment-id") };
}

/** Sessions the rollout's split sends to the candidate (or not) at `percent`. */
function sessionsOn(rolloutId: string, percent: number, toCandidate: boolean, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const s = `session-${i}`;
    if (goesToCandidate(rolloutId, s, percent) === toCandidate) out.push(s);
  }
  return out;
}

/** Waits until the usage queue has written `count` gateway measurements of `deploymentId`. */
async function measured(deploymentId: string, count: number) {
  await waitFor(
    async () => {
      const row = await env.DB.prepare(
        "SELECT COUNT(*) AS n FROM metrics_events WHERE deployment_id = ? AND source = 'gateway'",
      )
        .bind(deploymentId)
        .first<{ n: number }>();
      return (row?.n ?? 0) >= count ? true : undefined;
    },
    { timeoutMs: 15_000, what: `${count} measurements of ${deploymentId}` },
  );
}

async function auditActions(agentRolloutId: string) {
  const { results } = await env.DB.prepare(
    "SELECT action, actor FROM audit_log WHERE target_type = 'rollout' AND target_id = ? ORDER BY id",
  )
    .bind(agentRolloutId)
    .all<{ action: string; actor: string }>();
  return results;
}

const TWO_STAGES = [
  { percent: 10, minDurationSeconds: 60 },
  { percent: 50, minDurationSeconds: 60 },
];

describe("routing during a rollout", () => {
  it("pins a new session where the split sends it; a promoted rollout's pin survives a new deploy, a session pinned before the rollout keeps its pin", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    // Pinned to v1 before the rollout: the split never moves it.
    const before = "pinned-before-rollout";
    expect((await servedBy(headers, agentId, before)).deploymentId).toBe(v1);
    const rollout = await started(headers, agentId, {
      deploymentId: v2,
      stages: [{ percent: 50, minDurationSeconds: 60 }],
      abortOn: { maxErrorRatePct: 50, minRequests: 100 },
    });
    const [onCandidate] = sessionsOn(rollout.id, 50, true, 1);
    for (let i = 0; i < 2; i++) {
      expect((await servedBy(headers, agentId, onCandidate)).deploymentId).toBe(v2);
      expect((await servedBy(headers, agentId, before)).deploymentId).toBe(v1);
    }
    const promoted = await call("POST", `/v1/agents/${agentId}/rollouts/${rollout.id}/promote`, { headers });
    expect(promoted.status).toBe(200);
    // A new deploy: the session the rollout pinned to v2 stays there, like any pinned session.
    const v3 = await deployAndActivate(headers, agentId, { moduleCode: modules.fixedAnswer("v3") });
    await waitFor(async () => ((await servedBy(headers, agentId)).deploymentId === v3.id ? true : undefined), {
      timeoutMs: 3000,
      what: "v3 serving calls without a session",
    });
    expect((await servedBy(headers, agentId, onCandidate)).deploymentId).toBe(v2);
    expect((await servedBy(headers, agentId, before)).deploymentId).toBe(v1);
  });

  it("at 50% splits traffic by session: the same session sees the same version every time, both versions are seen", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    const rollout = await started(headers, agentId, {
      deploymentId: v2,
      stages: [{ percent: 50, minDurationSeconds: 60 }],
      abortOn: { maxErrorRatePct: 5, minRequests: 10 },
    });
    expect(rollout).toMatchObject({ status: "running", stageIndex: 0, currentPercent: 50, baselineDeploymentId: v1 });
    // The pointer does not move: the candidate serves a share, it is not active.
    expect(await expectPointerInvariant(agentId)).toBe(v1);
    expect((await getDeployment(headers, agentId, v2)).status).toBe("ready");

    const seen = new Map<string, string>();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 24; i++) {
        const s = `user-session-${i}`;
        const { status, deploymentId } = await servedBy(headers, agentId, s);
        expect(status).toBe(200);
        expect([v1, v2]).toContain(deploymentId);
        if (round === 0) seen.set(s, deploymentId as string);
        else expect(deploymentId, `session ${s}, round ${round}`).toBe(seen.get(s));
      }
    }
    const onCandidate = [...seen.values()].filter((d) => d === v2).length;
    expect(onCandidate).toBeGreaterThan(0);
    expect(onCandidate).toBeLessThan(24);
    // The split is the documented hash: each session went where goesToCandidate says.
    for (const [s, d] of seen) expect(d).toBe(goesToCandidate(rollout.id, s, 50) ? v2 : v1);

    // Without a sessionId each call is split by its request id: both versions answer across calls.
    const anonymous = new Set<string | null>();
    for (let i = 0; i < 30; i++) anonymous.add((await servedBy(headers, agentId)).deploymentId);
    expect([...anonymous].sort()).toEqual([v1, v2].sort());

    // Streams are split the same way (x-deployment-id on the run).
    const [onV2] = sessionsOn(rollout.id, 50, true, 1);
    const streamed = await call("POST", `/v1/invoke/${agentId}/stream`, {
      headers,
      body: { ...userMessage("stream"), sessionId: onV2 },
    });
    expect(streamed.headers.get("x-deployment-id")).toBe(v2);
    expect(await streamed.text()).toContain("v2");

    // A preview still goes where it names, whatever the split says.
    const [onV1] = sessionsOn(rollout.id, 50, false, 1);
    const preview = await call("POST", `/v1/invoke/${agentId}`, {
      headers: { ...headers, "x-webhost-deployment": v2 },
      body: { ...userMessage("preview"), sessionId: onV1 },
    });
    expect(preview.headers.get("x-deployment-id")).toBe(v2);
  });
});

describe("routing cost during a rollout", () => {
  it("stays off D1 on the hot path: the route with its rollout is one cached read per second, not one per invocation (B3)", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    await started(headers, agentId, {
      deploymentId: v2,
      stages: [{ percent: 50, minDurationSeconds: 60 }],
      abortOn: { maxErrorRatePct: 5, minRequests: 10 },
    });
    // Warm the isolate's caches (route with its rollout, user, tier, quota).
    for (let i = 0; i < 3; i++) expect((await servedBy(headers, agentId, `warm-${i}`)).status).toBe(200);
    const d1 = recordingD1();
    const served = new Set<string | null>();
    const invocations = 60;
    const startedAt = Date.now();
    for (let i = 0; i < invocations; i++) {
      const res = await callWithEnv({ DB: d1 }, "POST", `/v1/invoke/${agentId}`, {
        headers,
        body: { ...userMessage("hot"), sessionId: `hot-${i}` },
      });
      expect(res.status).toBe(200);
      served.add(res.headers.get("x-deployment-id"));
      await res.text();
    }
    const seconds = (Date.now() - startedAt) / 1000;
    expect([...served].sort()).toEqual([v1, v2].sort());
    // The route — the agent, its active deployment, the rollout and its candidate in one query —
    // is read at most once per second of the run (its TTL), however many invocations: the rollout
    // adds no statement of its own. Under B1's load (hundreds of invocations a second) that is far
    // below 0.1 per invocation; this loop runs only about 10 a second. The other reads (the
    // invocation quota) are time-bounded caches too, never one per invocation.
    const routeReads = d1.statements.filter((q) => q.includes('"rollouts"'));
    expect(routeReads.length).toBeGreaterThan(0);
    expect(routeReads.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    expect(d1.statements.every((q) => !q.includes('"rollouts"') || q.startsWith('select "agents"."status"'))).toBe(
      true,
    );
    const others = d1.statements.length - routeReads.length;
    expect(others, d1.statements.join("\n")).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    expect(others).toBeLessThan(invocations / 5);
  });
});

describe("the evaluator", () => {
  it("aborts a disabled agent's rollout at the next evaluation (it could never complete)", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    const rollout = await started(headers, agentId, {
      deploymentId: v2,
      stages: [{ percent: 50, minDurationSeconds: 60 }],
      abortOn: { maxErrorRatePct: 50, minRequests: 100 },
    });
    expect((await call("POST", `/v1/agents/${agentId}/disable`, { headers })).status).toBe(200);
    await evaluateRollouts(db(), { now: rollout.stageStartedAt + 120_000 });
    expect(await getRollout(headers, agentId, rollout.id)).toMatchObject({
      status: "aborted",
      endReason: "the agent was disabled",
    });
    expect((await getDeployment(headers, agentId, v2)).status).toBe("inactive");
    expect(await expectPointerInvariant(agentId)).toBe(v1);
  });

  it("aborts a candidate whose agent fails every call once minRequests is reached: traffic returns to the baseline, the candidate is inactive, the reason recorded", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate(modules.THROWS_ON_INVOKE);
    const rollout = await started(headers, agentId, {
      deploymentId: v2,
      stages: [{ percent: 50, minDurationSeconds: 600 }],
      abortOn: { maxErrorRatePct: 20, minRequests: 5 },
    });
    const failing = sessionsOn(rollout.id, 50, true, 5);
    const healthy = sessionsOn(rollout.id, 50, false, 5);

    // Below minRequests nothing is decided, however bad the candidate looks.
    for (const s of failing.slice(0, 4))
      expect(await servedBy(headers, agentId, s)).toEqual({ status: 502, deploymentId: v2 });
    for (const s of healthy) expect(await servedBy(headers, agentId, s)).toEqual({ status: 200, deploymentId: v1 });
    await measured(v2, 4);
    await measured(v1, 5);
    await evaluateRollouts(db());
    const waiting = await getRollout(headers, agentId, rollout.id);
    expect(waiting.status).toBe("running");
    expect(waiting.lastEvaluation).toMatchObject({
      decision: "wait",
      candidate: { requests: 4, errors: 4, errorRatePct: 100 },
      baseline: { requests: 5, errors: 0 },
    });

    // The fifth failure reaches minRequests: the next evaluation aborts (well before the stage ends).
    expect(await servedBy(headers, agentId, failing[4])).toEqual({ status: 502, deploymentId: v2 });
    await measured(v2, 5);
    await evaluateRollouts(db());
    const aborted = await getRollout(headers, agentId, rollout.id);
    expect(aborted).toMatchObject({ status: "aborted", currentPercent: null });
    expect(aborted.endReason).toMatch(/error rate 100% exceeded maxErrorRatePct 20% \(5 of 5 requests failed\)/);
    expect((await getDeployment(headers, agentId, v2)).status).toBe("inactive");
    expect(await expectPointerInvariant(agentId)).toBe(v1);

    // Every session, the candidate's included, is served by the baseline again (within the route cache's bound).
    await waitFor(async () => ((await servedBy(headers, agentId, failing[0])).deploymentId === v1 ? true : undefined), {
      timeoutMs: 3000,
      what: "the failing session back on the baseline",
    });
    for (const s of [...failing, ...healthy])
      expect(await servedBy(headers, agentId, s)).toEqual({ status: 200, deploymentId: v1 });
    expect(await auditActions(rollout.id)).toEqual([
      { action: "rollout.started", actor: expect.stringMatching(/^user:usr_/) },
      { action: "rollout.aborted", actor: "system:rollout-evaluator" },
    ]);
    // Ended: neither promote nor abort applies any more.
    await expectProblem(
      await call("POST", `/v1/agents/${agentId}/rollouts/${rollout.id}/promote`, { headers }),
      409,
      "rollout_ended",
    );
  });

  it("aborts on maxP95Ms when the candidate is slow", async () => {
    const { headers, agentId, v2 } = await agentWithCandidate(modules.slowAnswer(150));
    const rollout = await started(headers, agentId, {
      deploymentId: v2,
      stages: [{ percent: 50, minDurationSeconds: 60 }],
      abortOn: { maxP95Ms: 50, minRequests: 3 },
    });
    for (const s of sessionsOn(rollout.id, 50, true, 3)) expect((await servedBy(headers, agentId, s)).status).toBe(200);
    await measured(v2, 3);
    await evaluateRollouts(db());
    const aborted = await getRollout(headers, agentId, rollout.id);
    expect(aborted.status).toBe("aborted");
    expect(aborted.endReason).toMatch(/p95 duration \d+ ms exceeded maxP95Ms 50 ms/);
  });

  it("advances a healthy candidate when a stage's time has passed, and after the last stage makes it active", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    const rollout = await started(headers, agentId, {
      deploymentId: v2,
      stages: TWO_STAGES,
      abortOn: { maxErrorRatePct: 1, maxP95Ms: 30_000, minRequests: 3 },
    });
    for (const s of sessionsOn(rollout.id, 10, true, 3))
      expect(await servedBy(headers, agentId, s)).toEqual({ status: 200, deploymentId: v2 });
    await measured(v2, 3);

    // Before the stage's 60 s: no move.
    const t0 = rollout.stageStartedAt;
    await evaluateRollouts(db(), { now: t0 + 59_000 });
    expect(await getRollout(headers, agentId, rollout.id)).toMatchObject({ status: "running", stageIndex: 0 });

    // After it: stage 2 (50%), with the healthy measurements recorded.
    await evaluateRollouts(db(), { now: t0 + 61_000 });
    const second = await getRollout(headers, agentId, rollout.id);
    expect(second).toMatchObject({ status: "running", stageIndex: 1, currentPercent: 50, stageStartedAt: t0 + 61_000 });
    expect(second.lastEvaluation).toMatchObject({ decision: "advance", candidate: { requests: 3, errors: 0 } });
    // A session on the candidate at 10% stays on it at 50% (the split only grows).
    const early = sessionsOn(rollout.id, 10, true, 1)[0];
    await waitFor(async () => (goesToCandidate(rollout.id, early!, 50) ? true : undefined));
    expect((await servedBy(headers, agentId, early)).deploymentId).toBe(v2);

    // The last stage passed: the candidate is active through the activation's pointer move.
    await evaluateRollouts(db(), { now: t0 + 61_000 + 30_000 });
    await evaluateRollouts(db(), { now: t0 + 122_000 });
    const done = await getRollout(headers, agentId, rollout.id);
    expect(done).toMatchObject({ status: "completed", currentPercent: null });
    expect(done.endReason).toMatch(/stage 2 \(50%\) passed.*the candidate is active/);
    expect(await expectPointerInvariant(agentId)).toBe(v2);
    expect((await getDeployment(headers, agentId, v2)).status).toBe("active");
    expect((await getDeployment(headers, agentId, v1)).status).toBe("inactive");
    await waitFor(
      async () =>
        (await servedBy(headers, agentId, sessionsOn(rollout.id, 50, false, 1)[0])).deploymentId === v2
          ? true
          : undefined,
      { timeoutMs: 3000, what: "every session on the new active deployment" },
    );
    expect((await auditActions(rollout.id)).map((a) => a.action)).toEqual([
      "rollout.started",
      "rollout.advanced",
      "rollout.completed",
    ]);
    // The completed candidate is a normal active deployment: it can be rolled back from.
    const back = await call("POST", `/v1/agents/${agentId}/deployments/${v1}/activate`, { headers });
    expect(back.status).toBe(200);
  });

  it("aborts a rollout whose baseline was replaced by an activation outside it", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    const v3 = await deployAndActivate(headers, agentId, { moduleCode: modules.fixedAnswer("v3") });
    // v3 is now active; a rollout from it, then someone activates v1 by hand.
    const rollout = await started(headers, agentId, {
      deploymentId: v2,
      stages: [{ percent: 50, minDurationSeconds: 60 }],
      abortOn: { maxErrorRatePct: 5, minRequests: 1 },
    });
    expect(rollout.baselineDeploymentId).toBe(v3.id);
    expect((await call("POST", `/v1/agents/${agentId}/deployments/${v1}/activate`, { headers })).status).toBe(200);
    await evaluateRollouts(db());
    const ended = await getRollout(headers, agentId, rollout.id);
    expect(ended.status).toBe("aborted");
    expect(ended.endReason).toMatch(/active deployment changed outside the rollout/);
    expect(await expectPointerInvariant(agentId)).toBe(v1);
  });
});

describe("promote and abort by the user", () => {
  it("one running rollout per agent (409); abort sends traffic back; a new rollout may then start and promote makes it active", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    const body = { deploymentId: v2, stages: TWO_STAGES, abortOn: { maxErrorRatePct: 5, minRequests: 10 } };
    const first = await started(headers, agentId, body);
    const second = await expectProblem(await startRollout(headers, agentId, body), 409, "rollout_in_progress");
    expect(second.rolloutId).toBe(first.id);
    const listed = await call("GET", `/v1/agents/${agentId}/rollouts`, { headers });
    expect((await json(listed)).rollouts.map((r: Rollout) => [r.id, r.status])).toEqual([[first.id, "running"]]);

    const abortRes = await call("POST", `/v1/agents/${agentId}/rollouts/${first.id}/abort`, { headers });
    expect(abortRes.status).toBe(200);
    const aborted = (await json(abortRes)).rollout as Rollout;
    expect(aborted).toMatchObject({ status: "aborted", endReason: "aborted by the user" });
    expect((await getDeployment(headers, agentId, v2)).status).toBe("inactive");
    await expectProblem(
      await call("POST", `/v1/agents/${agentId}/rollouts/${first.id}/abort`, { headers }),
      409,
      "rollout_ended",
    );

    // The aborted (now inactive) candidate can be rolled out again, and promoted at once.
    const again = await started(headers, agentId, body);
    const promoted = await call("POST", `/v1/agents/${agentId}/rollouts/${again.id}/promote`, { headers });
    expect(promoted.status).toBe(200);
    expect((await json(promoted)).rollout).toMatchObject({ status: "completed", endReason: "promoted by the user" });
    expect(await expectPointerInvariant(agentId)).toBe(v2);
    expect((await getDeployment(headers, agentId, v1)).status).toBe("inactive");
    await waitFor(async () => ((await servedBy(headers, agentId, "any")).deploymentId === v2 ? true : undefined), {
      timeoutMs: 3000,
      what: "the promoted candidate serving",
    });
    expect((await auditActions(again.id)).map((a) => a.action)).toEqual(["rollout.started", "rollout.completed"]);
    const all = await call("GET", `/v1/agents/${agentId}/rollouts?limit=1`, { headers });
    expect((await json(all)).rollouts.map((r: Rollout) => [r.id, r.status])).toEqual([[again.id, "completed"]]);
  });

  it("a promote that cannot move the pointer leaves the rollout running: 409 agent_disabled, or 409 conflict once the candidate's code is gone; abort still ends it", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    const body = { deploymentId: v2, stages: TWO_STAGES, abortOn: { maxErrorRatePct: 5, minRequests: 10 } };
    const rollout = await started(headers, agentId, body);
    const promote = () => call("POST", `/v1/agents/${agentId}/rollouts/${rollout.id}/promote`, { headers });

    // Retention removed the candidate's code after the rollout started (as the cleanup cron does).
    await env.DB.prepare("UPDATE deployments SET script_removed_at = ? WHERE id = ?").bind(Date.now(), v2).run();
    const conflict = await expectProblem(await promote(), 409, "conflict");
    expect(conflict.detail).toBe(`rollout ${rollout.id} could not be promoted: the agent changed meanwhile; try again`);
    expect((await getRollout(headers, agentId, rollout.id)).status).toBe("running");
    expect(await expectPointerInvariant(agentId)).toBe(v1);

    // Disabled before the evaluator's next pass: promote is refused, abort is not.
    expect((await call("POST", `/v1/agents/${agentId}/disable`, { headers })).status).toBe(200);
    await expectProblem(await promote(), 409, "agent_disabled");
    expect((await getRollout(headers, agentId, rollout.id)).status).toBe("running");
    const aborted = await call("POST", `/v1/agents/${agentId}/rollouts/${rollout.id}/abort`, { headers });
    expect(aborted.status).toBe(200);
    expect((await json(aborted)).rollout).toMatchObject({ status: "aborted", endReason: "aborted by the user" });
    await expectProblem(await promote(), 409, "rollout_ended");
    expect((await auditActions(rollout.id)).map((a) => a.action)).toEqual(["rollout.started", "rollout.aborted"]);
  });
});

describe("tenant isolation and validation", () => {
  it("a stranger gets 404 on every rollout route, and cannot name the owner's deployment as a candidate", async () => {
    const { headers, agentId, v2 } = await agentWithCandidate();
    const body = { deploymentId: v2, stages: TWO_STAGES, abortOn: { maxErrorRatePct: 5, minRequests: 10 } };
    const rollout = await started(headers, agentId, body);
    const stranger = await newUser();
    await expectProblem(await startRollout(stranger.headers, agentId, body), 404, "not_found");
    await expectProblem(
      await call("GET", `/v1/agents/${agentId}/rollouts`, { headers: stranger.headers }),
      404,
      "not_found",
    );
    for (const path of ["", "/promote", "/abort"]) {
      const method = path ? "POST" : "GET";
      await expectProblem(
        await call(method, `/v1/agents/${agentId}/rollouts/${rollout.id}${path}`, { headers: stranger.headers }),
        404,
        "not_found",
      );
    }
    // On an agent of their own, the owner's deployment is just not one of theirs.
    const theirs = await createAgent(stranger.headers);
    await deployAndActivate(stranger.headers, theirs.id, { moduleCode: modules.fixedAnswer("s") });
    const p = await expectProblem(
      await startRollout(stranger.headers, theirs.id, body),
      400,
      "invalid_rollout_candidate",
    );
    expect(p.errors[0].location).toBe("body.deploymentId");
    // And the owner's rollout id under the stranger's own agent is not found either.
    await expectProblem(
      await call("GET", `/v1/agents/${theirs.id}/rollouts/${rollout.id}`, { headers: stranger.headers }),
      404,
      "not_found",
    );
    expect((await getRollout(headers, agentId, rollout.id)).status).toBe("running");
  });

  it("refuses bad stages, abortOn and candidates with 400 (stable codes) and a rollout with no baseline with 409", async () => {
    const { headers, agentId, v1, v2 } = await agentWithCandidate();
    const good = { deploymentId: v2, stages: TWO_STAGES, abortOn: { maxErrorRatePct: 5, minRequests: 10 } };
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ ...good, stages: [] }, "body.stages"],
      [{ ...good, stages: [{ percent: 0, minDurationSeconds: 60 }] }, "body.stages.0.percent"],
      [{ ...good, stages: [{ percent: 101, minDurationSeconds: 60 }] }, "body.stages.0.percent"],
      [{ ...good, stages: [{ percent: 12.5, minDurationSeconds: 60 }] }, "body.stages.0.percent"],
      [{ ...good, stages: [{ percent: 10, minDurationSeconds: 59 }] }, "body.stages.0.minDurationSeconds"],
      [
        {
          ...good,
          stages: [
            { percent: 50, minDurationSeconds: 60 },
            { percent: 50, minDurationSeconds: 60 },
          ],
        },
        "body.stages.1.percent",
      ],
      [
        { ...good, stages: Array.from({ length: 11 }, (_, i) => ({ percent: i + 1, minDurationSeconds: 60 })) },
        "body.stages",
      ],
      [{ ...good, abortOn: { maxErrorRatePct: 5 } }, "body.abortOn.minRequests"],
      [{ ...good, abortOn: { minRequests: 10 } }, "body.abortOn"],
      [{ ...good, abortOn: { maxErrorRatePct: 101, minRequests: 10 } }, "body.abortOn.maxErrorRatePct"],
      [{ ...good, abortOn: { maxP95Ms: 0, minRequests: 10 } }, "body.abortOn.maxP95Ms"],
      [{ ...good, stages: [{ percent: 10, minDurationSeconds: 60, extra: 1 }] }, "body.stages.0"],
      [{ ...good, status: "completed" }, "body"],
      [{ stages: TWO_STAGES, abortOn: good.abortOn }, "body.deploymentId"],
    ];
    for (const [body, location] of bad) {
      const p = await expectProblem(await startRollout(headers, agentId, body), 400, "validation_failed");
      expect(
        p.errors.map((e: { location: string }) => e.location).some((l: string) => l.startsWith(location)),
        `${JSON.stringify(body)} → ${JSON.stringify(p.errors)}`,
      ).toBe(true);
    }
    // Candidates that cannot be rolled out.
    const failed = await deploy(headers, agentId, { moduleCode: modules.THROWS_AT_LOAD, activation: "manual" });
    expect((await waitUntilSettled(headers, agentId, failed.id)).status).toBe("failed");
    for (const [deploymentId, status] of [
      [v1, "active"],
      [failed.id, "failed"],
      ["dep_01jd0000000000000000000000", undefined],
      ["not-an-id", undefined],
    ] as const) {
      const p = await expectProblem(
        await startRollout(headers, agentId, { ...good, deploymentId }),
        400,
        "invalid_rollout_candidate",
      );
      expect(p.deploymentStatus).toBe(status);
    }
    // Nothing was started by any of these.
    const { results } = await env.DB.prepare("SELECT id FROM rollouts WHERE agent_id = ?").bind(agentId).all();
    expect(results).toEqual([]);

    // No active deployment: nothing to roll out from.
    const fresh = await createAgent(headers);
    const ready = await deploy(headers, fresh.id, { moduleCode: modules.fixedAnswer("r"), activation: "manual" });
    await waitUntilSettled(headers, fresh.id, ready.id);
    await expectProblem(
      await startRollout(headers, fresh.id, { ...good, deploymentId: ready.id }),
      409,
      "no_active_deployment",
    );
  });
});
