// Releases over HTTP against `wrangler dev`: a manual deployment is `ready`, previewable with
// x-webhost-deployment (not by another tenant), then activated. Canary rollouts: a 50% rollout splits traffic by session (the
// same session, the same version, every call; both versions across sessions); a candidate whose
// agent fails every call is aborted by the evaluator (the dev server's cron, triggered through its
// local scheduled endpoint) and every session returns to the baseline, the abort announced as a
// signed `rollout.aborted` webhook to a local receiver that checks the Standard Webhooks signature
// itself; a second rollout is 409;
// a stranger gets 404 on every rollout route; bad input is 400; a healthy one-stage rollout
// completes by itself after its real minute (several stages are tested with an injected clock in
// tests/rollouts.test.ts).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { api, e2e, expectJson, expectProblem, newUser, type User, waitFor } from "./harness";
import { startWebhookReceiver, verifiedSignatures, type WebhookReceiver } from "./webhook-receiver";

const answers = (text: string) => `export default {
  async fetch(req) {
    if (req.method !== "POST") return new Response("ok");
    return Response.json({ output: { text: ${JSON.stringify(text)} } });
  },
};`;
const FAILS = `export default {
  async fetch(req) {
    if (req.method !== "POST") return new Response("ok");
    throw new Error("the candidate is broken");
  },
};`;

type Rollout = { id: string; status: string; currentPercent: number | null; endReason: string | null };

let owner: User;
let receiver: WebhookReceiver;

async function deployed(agentId: string, moduleCode: string, activation: "auto" | "manual"): Promise<string> {
  const res = await api("POST", `/v1/agents/${agentId}/deploy`, { user: owner, body: { moduleCode, activation } });
  const { deployment } = await expectJson<{ deployment: { id: string } }>(res, 202);
  const want = activation === "auto" ? "active" : "ready";
  await waitFor(`deployment ${deployment.id} ${want}`, async () => {
    const got = await api("GET", `/v1/agents/${agentId}/deployments/${deployment.id}`, { user: owner });
    const status = (await expectJson<{ deployment: { status: string } }>(got, 200)).deployment.status;
    if (status === "failed") throw new Error(`deployment ${deployment.id} failed`);
    return status === want ? true : undefined;
  });
  return deployment.id;
}

/** An agent with v1 active and a candidate `ready`. */
async function agentWithCandidate(candidateCode: string) {
  const res = await api("POST", "/v1/agents", {
    user: owner,
    body: { name: `canary-${crypto.randomUUID().slice(0, 8)}` },
  });
  const agentId = (await expectJson<{ agent: { id: string } }>(res, 201)).agent.id;
  const baseline = await deployed(agentId, answers("v1"), "auto");
  const candidate = await deployed(agentId, candidateCode, "manual");
  return { agentId, baseline, candidate };
}

const rolloutBody = (deploymentId: string, minRequests = 3) => ({
  deploymentId,
  stages: [
    { percent: 50, minDurationSeconds: 600 },
    { percent: 100, minDurationSeconds: 60 },
  ],
  abortOn: { maxErrorRatePct: 10, minRequests },
});

async function servedBy(agentId: string, sessionId: string) {
  const res = await api("POST", `/v1/invoke/${agentId}`, {
    user: owner,
    body: { messages: [{ role: "user", content: "which?" }], sessionId },
  });
  await res.text();
  return { status: res.status, deploymentId: res.headers.get("x-deployment-id") };
}

/** Runs the dev server's every-minute cron once (wrangler's local scheduled trigger). */
async function runEvaluator() {
  const res = await fetch(`${e2e.baseUrl}/cdn-cgi/local/scheduled?cron=*+*+*+*+*`);
  await res.text();
  expect(res.status).toBe(200);
}

const SESSIONS = Array.from({ length: 24 }, (_, i) => `e2e-session-${i}`);

beforeAll(async () => {
  receiver = await startWebhookReceiver();
});

// A new owner per test: each test makes an agent, and the free plan allows three.
beforeEach(async () => {
  owner = await newUser("canary-owner");
});

afterAll(async () => {
  await receiver?.stop();
});

describe("releasing by hand over HTTP", () => {
  it("a manual deployment ends ready, answers a preview, serves nobody else, then serves after activate", async () => {
    const { agentId, baseline, candidate } = await agentWithCandidate(answers("v2"));
    const invoke = (user: User, headers: Record<string, string> = {}) =>
      api("POST", `/v1/invoke/${agentId}`, { user, headers, body: { messages: [{ role: "user", content: "hi" }] } });
    const preview = await invoke(owner, { "x-webhost-deployment": candidate });
    expect(preview.headers.get("x-deployment-id")).toBe(candidate);
    expect((await expectJson<{ output: { text: string } }>(preview, 200)).output.text).toBe("v2");
    const plain = await invoke(owner);
    expect(plain.headers.get("x-deployment-id")).toBe(baseline);
    expect((await expectJson<{ output: { text: string } }>(plain, 200)).output.text).toBe("v1");
    // Another tenant cannot preview it, even naming the id.
    await expectProblem(
      await invoke(await newUser("preview-stranger"), { "x-webhost-deployment": candidate }),
      404,
      "not_found",
    );

    await expectJson(
      await api("POST", `/v1/agents/${agentId}/deployments/${candidate}/activate`, { user: owner }),
      200,
    );
    await waitFor("the activated deployment serving", async () => {
      const res = await invoke(owner);
      await res.body?.cancel();
      return res.headers.get("x-deployment-id") === candidate ? true : undefined;
    });
    const read = await api("GET", `/v1/agents/${agentId}/deployments/${baseline}`, { user: owner });
    expect((await expectJson<{ deployment: { status: string } }>(read, 200)).deployment.status).toBe("inactive");
  });
});

describe("canary rollouts over HTTP", () => {
  it("a 50% rollout splits by session: the same session sees the same version every time, both versions serve", async () => {
    const { agentId, baseline, candidate } = await agentWithCandidate(answers("v2"));
    const started = await api("POST", `/v1/agents/${agentId}/rollouts`, { user: owner, body: rolloutBody(candidate) });
    const { rollout } = await expectJson<{ rollout: Rollout }>(started, 201);
    expect(rollout).toMatchObject({ status: "running", currentPercent: 50 });

    const first = new Map<string, string | null>();
    for (const s of SESSIONS) {
      const served = await servedBy(agentId, s);
      expect(served.status).toBe(200);
      first.set(s, served.deploymentId);
    }
    for (let round = 0; round < 2; round++) {
      for (const s of SESSIONS) expect((await servedBy(agentId, s)).deploymentId, s).toBe(first.get(s));
    }
    expect(new Set(first.values())).toEqual(new Set([baseline, candidate]));

    // One rollout at a time.
    const again = await api("POST", `/v1/agents/${agentId}/rollouts`, { user: owner, body: rolloutBody(candidate) });
    await expectProblem(again, 409, "rollout_in_progress");

    // A stranger: 404 on every rollout route of the owner's agent.
    const stranger = await newUser("canary-stranger");
    await expectProblem(
      await api("POST", `/v1/agents/${agentId}/rollouts`, { user: stranger, body: rolloutBody(candidate) }),
      404,
      "not_found",
    );
    for (const [method, suffix] of [
      ["GET", ""],
      ["POST", "/promote"],
      ["POST", "/abort"],
    ] as const) {
      const res = await api(method, `/v1/agents/${agentId}/rollouts/${rollout.id}${suffix}`, { user: stranger });
      await expectProblem(res, 404, "not_found");
    }
    // Untouched by all that.
    const read = await api("GET", `/v1/agents/${agentId}/rollouts/${rollout.id}`, { user: owner });
    expect((await expectJson<{ rollout: Rollout }>(read, 200)).rollout.status).toBe("running");

    // Bad input is a 400 naming the field.
    const bad = await api("POST", `/v1/agents/${agentId}/rollouts`, {
      user: owner,
      body: { ...rolloutBody(candidate), stages: [{ percent: 50, minDurationSeconds: 30 }] },
    });
    const problem = await expectProblem(bad, 400, "validation_failed");
    expect(problem.errors?.[0]?.location).toBe("body.stages.0.minDurationSeconds");

    // The owner ends it: all traffic back on the baseline.
    await expectJson(await api("POST", `/v1/agents/${agentId}/rollouts/${rollout.id}/abort`, { user: owner }), 200);
    await waitFor("every session on the baseline", async () =>
      (await servedBy(agentId, SESSIONS[0] as string)).deploymentId === baseline ? true : undefined,
    );
    for (const s of SESSIONS) expect((await servedBy(agentId, s)).deploymentId).toBe(baseline);
  });

  it("a healthy candidate becomes active by itself once its stage's time has passed (a real minute)", async () => {
    const { agentId, candidate } = await agentWithCandidate(answers("v2"));
    const body = {
      deploymentId: candidate,
      stages: [{ percent: 50, minDurationSeconds: 60 }],
      abortOn: { maxErrorRatePct: 10, minRequests: 3 },
    };
    const started = await api("POST", `/v1/agents/${agentId}/rollouts`, { user: owner, body });
    const { rollout } = await expectJson<{ rollout: Rollout & { stageStartedAt: number } }>(started, 201);
    let onCandidate = 0;
    for (const s of SESSIONS) {
      const served = await servedBy(agentId, s);
      expect(served.status).toBe(200);
      if (served.deploymentId === candidate) onCandidate++;
    }
    expect(onCandidate).toBeGreaterThanOrEqual(3);
    // Before the stage's minute: the evaluator records and waits.
    await runEvaluator();
    const early = await api("GET", `/v1/agents/${agentId}/rollouts/${rollout.id}`, { user: owner });
    expect((await expectJson<{ rollout: Rollout }>(early, 200)).rollout.status).toBe("running");
    // wrangler dev's clock cannot be moved: wait out the stage.
    const waitMs = rollout.stageStartedAt + 61_000 - Date.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    const completed = await waitFor(
      "the rollout to complete",
      async () => {
        await runEvaluator();
        const res = await api("GET", `/v1/agents/${agentId}/rollouts/${rollout.id}`, { user: owner });
        const r = (await expectJson<{ rollout: Rollout }>(res, 200)).rollout;
        return r.status === "running" ? undefined : r;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(completed.status).toBe("completed");
    const agent = await api("GET", `/v1/agents/${agentId}`, { user: owner });
    expect((await expectJson<{ agent: { activeDeploymentId: string } }>(agent, 200)).agent.activeDeploymentId).toBe(
      candidate,
    );
    await waitFor("a call without a session served by the new active deployment", async () => {
      const res = await api("POST", `/v1/invoke/${agentId}`, {
        user: owner,
        body: { messages: [{ role: "user", content: "which?" }] },
      });
      await res.body?.cancel();
      return res.headers.get("x-deployment-id") === candidate ? true : undefined;
    });
  }, 120_000);

  it("a candidate whose agent fails every call is aborted automatically, and traffic returns to the baseline", async () => {
    const { agentId, baseline, candidate } = await agentWithCandidate(FAILS);
    const hookPath = `/${crypto.randomUUID()}/ok`;
    const hook = await api("POST", "/v1/webhooks", {
      user: owner,
      body: { url: `${receiver.baseUrl}${hookPath}`, events: ["rollout.aborted"] },
    });
    const { secret } = await expectJson<{ secret: string }>(hook, 201);
    const started = await api("POST", `/v1/agents/${agentId}/rollouts`, { user: owner, body: rolloutBody(candidate) });
    const { rollout } = await expectJson<{ rollout: Rollout }>(started, 201);

    let failures = 0;
    for (const s of SESSIONS) {
      const served = await servedBy(agentId, s);
      if (served.deploymentId === candidate) {
        expect(served.status).toBe(502);
        failures++;
      } else {
        expect(served).toEqual({ status: 200, deploymentId: baseline });
      }
    }
    expect(failures).toBeGreaterThanOrEqual(3);

    // Metering is batched: evaluate until the failures are counted and the rollout aborts.
    const aborted = await waitFor(
      "the rollout to abort",
      async () => {
        await runEvaluator();
        const res = await api("GET", `/v1/agents/${agentId}/rollouts/${rollout.id}`, { user: owner });
        const r = (await expectJson<{ rollout: Rollout }>(res, 200)).rollout;
        return r.status === "running" ? undefined : r;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(aborted.status).toBe("aborted");
    expect(aborted.endReason).toMatch(/error rate 100% exceeded maxErrorRatePct 10%/);
    const cand = await api("GET", `/v1/agents/${agentId}/deployments/${candidate}`, { user: owner });
    expect((await expectJson<{ deployment: { status: string } }>(cand, 200)).deployment.status).toBe("inactive");

    // Every session, the candidate's too, is served by the baseline again within the route cache's bound.
    await waitFor(
      "the baseline serving every session",
      async () => {
        for (const s of SESSIONS) if ((await servedBy(agentId, s)).deploymentId !== baseline) return undefined;
        return true;
      },
      { timeoutMs: 3000 },
    );
    for (const s of SESSIONS) expect(await servedBy(agentId, s)).toEqual({ status: 200, deploymentId: baseline });

    // The abort is announced to the owner's receiver, signed per Standard Webhooks.
    const message = await waitFor("rollout.aborted delivered", async () =>
      receiver.received.find((m) => m.path === hookPath),
    );
    expect(verifiedSignatures(secret, message)).toBe(1);
    expect(JSON.parse(message.body)).toMatchObject({
      type: "rollout.aborted",
      data: { rolloutId: rollout.id, agentId, candidateDeploymentId: candidate, baselineDeploymentId: baseline },
    });
    expect(JSON.parse(message.body).data.reason).toMatch(/error rate 100%/);
  });
});
