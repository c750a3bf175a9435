// Queue and D1 faults: duplicate and concurrent deliveries (one upload, one pointer move), a
// failing message inside a batch, dead letters, D1 batches as all-or-nothing transactions, and a
// D1 outage on API calls (503, nothing queued). tests/deploy-queue.test.ts has the consumer's
// ordinary behaviour; this file only adds the faults.
import { createExecutionContext, createMessageBatch, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import worker from "../src/index";
import { createRuntimeProvider } from "../src/runtime";
import type { RuntimeProvider } from "../src/runtime/types";
import { createDeployment } from "../src/services/deployments/create";
import { processDeployJob, retryDelaySeconds } from "../src/services/deployments/deploy-job";
import * as modules from "./fixtures/modules";
import { callWithEnv, recordingQueue } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { AUTHZ_MATRIX, makeMatrixWorld, methodOf } from "./helpers/authz-matrix";
import { faultyD1, recordingD1, withFailingWrites } from "./helpers/d1-faults";
import { createAgent, expectPointerInvariant, userIdOf, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { handMadeBatch } from "./helpers/queue-batch";
import { tenantState } from "./helpers/state";

const db = createDb(env.DB);

/** A user and agent whose deployments are created with a queue that drops the job. */
async function setup() {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  const userId = await userIdOf(user.subject);
  const { keyring, tierLimits } = await getConfig(env);
  const newDeployment = async (moduleCode = modules.fixedAnswer("queued"), agentId = agent.id) =>
    createDeployment(
      { db, userId, keyring, tierLimits, artifacts: env.ARTIFACTS, queue: { send: async () => {} } },
      agentId,
      { moduleCode },
    );
  return { ...user, agent, userId, keyring, newDeployment };
}

async function row(deploymentId: string) {
  return (await env.DB.prepare("SELECT * FROM deployments WHERE id = ?")
    .bind(deploymentId)
    .first<Record<string, any>>())!;
}

/** The real runtime, with each deploy() counted. */
async function countingRuntime(): Promise<RuntimeProvider & { deploys: string[] }> {
  const real = createRuntimeProvider({ env, ctx: createExecutionContext(), config: await getConfig(env) });
  const deploys: string[] = [];
  return {
    deploys,
    deploy: async (bundle) => {
      deploys.push(bundle.deploymentId);
      await real.deploy(bundle);
    },
    invoke: (target, request, opts) => real.invoke(target, request, opts),
    remove: (names) => real.remove(names),
  };
}

async function runQueue(batch: MessageBatch<unknown>) {
  const ctx = createExecutionContext();
  await worker.queue(batch, env, ctx);
  await waitOnExecutionContext(ctx);
}

/** Answers invoke/v1 with how many times this isolate evaluated the module's top level. */
const LOAD_COUNTER = `globalThis.loads = (globalThis.loads ?? 0) + 1;
export default {
  async fetch() {
    return Response.json({ output: { text: String(globalThis.loads) } });
  },
};`;

describe("deploy jobs delivered more than once", () => {
  it("two concurrent deliveries of one job upload the code once and move the pointer once; a late third changes nothing", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    const runtime = await countingRuntime();
    const d1 = recordingD1();
    const deps = { db: createDb(d1), keyring: s.keyring, runtime, artifacts: env.ARTIFACTS };
    const outcomes = await Promise.all([
      processDeployJob(deps, { deploymentId: d.id }, 1),
      processDeployJob(deps, { deploymentId: d.id }, 1),
    ]);
    expect(outcomes).toContainEqual({ action: "ack", result: "active" });
    expect(outcomes).toContainEqual(expect.objectContaining({ action: "retry", result: "claimed_elsewhere" }));
    const late = await processDeployJob(deps, { deploymentId: d.id }, 2);
    expect(late).toEqual({ action: "ack", result: "already_finished" });

    expect(runtime.deploys).toEqual([d.id]);
    const pointerMoves = d1.statements.filter((sql) => /^update "agents" set "active_deployment_id"/i.test(sql));
    expect(pointerMoves).toHaveLength(1);
    expect(await expectPointerInvariant(s.agent.id)).toBe(d.id);
  });

  it("through the queue handler, duplicates in one batch and a later redelivery load the module once", async () => {
    const s = await setup();
    const d = await s.newDeployment(LOAD_COUNTER);
    const batch = createMessageBatch("deploy-jobs", [
      { id: `dup-a-${d.id}`, timestamp: new Date(), attempts: 1, body: { deploymentId: d.id } },
      { id: `dup-b-${d.id}`, timestamp: new Date(), attempts: 1, body: { deploymentId: d.id } },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toHaveLength(1);
    const late = handMadeBatch("deploy-jobs", [{ deploymentId: d.id }], 2);
    await runQueue(late.batch);
    expect([...late.outcomes.values()]).toEqual([{ op: "ack" }]);

    expect((await row(d.id)).status).toBe("active");
    const res = await call("POST", `/v1/invoke/${s.agent.id}`, { headers: s.headers, body: userMessage("loads?") });
    expect((await json(res)).output.text).toBe("1");
  });
});

describe("a batch with a failing message", () => {
  it("retries only message 2 of 3 when D1 fails it, with exponential backoff; messages 1 and 3 are acked and activated", async () => {
    const s = await setup();
    const agents = [s.agent.id, (await createAgent(s.headers)).id, (await createAgent(s.headers)).id];
    const deps = await Promise.all(agents.map((agentId, i) => s.newDeployment(modules.fixedAnswer(`m${i}`), agentId)));
    const [d1, d2, d3] = deps as [(typeof deps)[0], (typeof deps)[0], (typeof deps)[0]];

    await withFailingWrites({ table: "deployments", on: "UPDATE", when: `OLD.id = '${d2.id}'` }, async () => {
      for (const attempts of [1, 3]) {
        const { batch, outcomes, ids } = handMadeBatch(
          "deploy-jobs",
          deps.map((d) => ({ deploymentId: d.id })),
          attempts,
        );
        await runQueue(batch);
        const expected = attempts === 1 ? [{ op: "ack" }, { op: "retry", delaySeconds: 2 }, { op: "ack" }] : undefined;
        if (expected) expect(ids.map((id) => outcomes.get(id))).toEqual(expected);
        else expect(outcomes.get(ids[1]!)).toEqual({ op: "retry", delaySeconds: retryDelaySeconds(3) });
      }
      expect(retryDelaySeconds(3)).toBe(8);
      expect((await row(d1.id)).status).toBe("active");
      expect((await row(d3.id)).status).toBe("active");
      expect(await row(d2.id)).toMatchObject({ status: "deploying", claimed_at: null });
    });

    const retried = handMadeBatch("deploy-jobs", [{ deploymentId: d2.id }], 4);
    await runQueue(retried.batch);
    expect([...retried.outcomes.values()]).toEqual([{ op: "ack" }]);
    expect((await row(d2.id)).status).toBe("active");
    for (const agentId of agents) expect(await expectPointerInvariant(agentId)).not.toBeNull();
  });
});

describe("dead letters", () => {
  it("two dead-letter deliveries of one job in one batch mark it failed exactly once", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    const warnings: string[] = [];
    const spy = vi.spyOn(console, "warn").mockImplementation((line: unknown) => void warnings.push(String(line)));
    try {
      const { batch, outcomes } = handMadeBatch("deploy-jobs-dlq", [{ deploymentId: d.id }, { deploymentId: d.id }], 5);
      await runQueue(batch);
      expect([...outcomes.values()]).toEqual([{ op: "ack" }, { op: "ack" }]);
    } finally {
      spy.mockRestore();
    }
    const lines = warnings.map((l) => JSON.parse(l)).filter((l) => l.deploymentId === d.id);
    expect(lines.map((l) => l.markedFailed).sort()).toEqual([false, true]);
    expect(await row(d.id)).toMatchObject({
      status: "failed",
      error_message: "the deploy job exhausted its retries without finishing; deploy again",
    });
  });
});

describe("D1 batches are all or nothing", () => {
  it("deploy: when the deployment insert (the batch's 2nd statement) fails, the artifact (1st) is not stored, nothing is queued, and the client gets a 500 without internals", async () => {
    const s = await setup();
    const queue = recordingQueue();
    const marker = crypto.randomUUID();
    const before = await tenantState(s.userId);
    const res = await withFailingWrites(
      { table: "deployments", on: "INSERT", when: `NEW.agent_id = '${s.agent.id}'` },
      () =>
        callWithEnv({ DEPLOY_QUEUE: queue }, "POST", `/v1/agents/${s.agent.id}/deploy`, {
          headers: s.headers,
          body: { moduleCode: `// ${marker}\n${modules.fixedAnswer("never")}` },
        }),
    );
    // An unexplained statement failure is a server fault (500), not an outage (503 is kept for
    // D1 being unreachable or overloaded); either way the body carries no SQL or internals.
    const problem = await expectProblem(res, 500, "internal_error");
    expect(JSON.stringify(problem)).not.toMatch(/injected|INSERT|deployments/);
    expect(queue.sent).toEqual([]);
    expect(await tenantState(s.userId)).toEqual(before);
    const artifacts = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM deployment_artifacts WHERE instr(module_code, ?) > 0",
    )
      .bind(marker)
      .first<{ n: number }>();
    expect(artifacts?.n).toBe(0);
  });

  it("deploy job: when the activation batch's last statement fails, neither the pointer move nor the demotion lands; a later attempt activates", async () => {
    const s = await setup();
    const first = await s.newDeployment(modules.fixedAnswer("first"));
    const second = await s.newDeployment(modules.fixedAnswer("second"));
    const deps = { db, keyring: s.keyring, runtime: await countingRuntime(), artifacts: env.ARTIFACTS };
    expect(await processDeployJob(deps, { deploymentId: first.id }, 1)).toEqual({ action: "ack", result: "active" });

    // Only the statement that ends `deploying` fails: the claim (also an UPDATE) goes through.
    await withFailingWrites(
      { table: "deployments", on: "UPDATE", when: `OLD.id = '${second.id}' AND NEW.status <> 'deploying'` },
      async () => {
        await expect(processDeployJob(deps, { deploymentId: second.id }, 1)).rejects.toThrow(/injected failure/);
      },
    );
    expect(await expectPointerInvariant(s.agent.id)).toBe(first.id);
    expect((await row(first.id)).status).toBe("active");
    expect((await row(second.id)).status).toBe("deploying");

    // The failed attempt released its claim, so the queue's retry finishes the job at once
    // instead of waiting out the lease.
    expect((await row(second.id)).claimed_at).toBeNull();
    expect(await processDeployJob(deps, { deploymentId: second.id }, 2)).toEqual({ action: "ack", result: "active" });
    expect(await expectPointerInvariant(s.agent.id)).toBe(second.id);
    expect((await row(first.id)).status).toBe("inactive");
  });
});

/** Routes that can answer without D1: invocations from warm isolate caches, and runs (Durable Objects). */
const SERVED_WITHOUT_D1 = /^(POST \/v1\/invoke\/|POST \/v1\/agents\/\{agentId\}\/runs|[A-Z]+ \/v1\/runs\/)/;

describe("D1 outage on API calls", () => {
  it("answers 503 service_unavailable with Retry-After on every /v1 route that needs D1, never a 500; health and docs need no D1", async () => {
    const { world, headers } = await makeMatrixWorld();
    const outage = faultyD1();
    const queue = recordingQueue();
    const wrong: string[] = [];
    for (const r of AUTHZ_MATRIX) {
      const req = await r.request(world);
      const res = await callWithEnv({ DB: outage, DEPLOY_QUEUE: queue }, methodOf(r), req.path, {
        headers: { ...headers.owner, ...req.headers },
        body: req.body,
        rawBody: req.rawBody,
      });
      const text = await res.text();
      const label = `${r.route}${r.variant ? ` (${r.variant})` : ""}`;
      if (!r.route.includes(" /v1/")) {
        // `/` and `/dashboard` redirect to the dashboard's page (this client does not follow).
        const redirected = (res.status === 301 || res.status === 302) && res.headers.get("location") === "/dashboard/";
        if (res.status !== 200 && !redirected) wrong.push(`${label}: ${res.status}`);
        continue;
      }
      const code = res.headers.get("content-type")?.startsWith("application/problem+json") ? JSON.parse(text).code : "";
      // Invocations right after the world was made are routed from the isolate's caches (route,
      // tier, quota: docs/benchmarks.md) and runs live in Durable Objects, so these may still be
      // served while D1 is down; any 5xx they give must still be the 503.
      if (SERVED_WITHOUT_D1.test(r.route) && res.status < 500) continue;
      if (res.status !== 503 || code !== "service_unavailable" || !/^\d+$/.test(res.headers.get("retry-after") ?? "")) {
        wrong.push(`${label}: ${res.status} ${code} retry-after=${res.headers.get("retry-after")}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(queue.sent).toEqual([]);
  });

  it("answers 503 to a new user's first call during an outage (the user row cannot be made), not 401 or 500", async () => {
    const { headers } = await newUser("first-sight");
    const res = await callWithEnv({ DB: faultyD1() }, "GET", "/v1/agents", { headers });
    await expectProblem(res, 503, "service_unavailable");
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
  });

  it("deploy answers 503 and queues nothing when D1 fails its writes while reads still work", async () => {
    const s = await setup();
    const queue = recordingQueue();
    const before = await tenantState(s.userId);
    const writesFail = faultyD1(env.DB, (sql) => /^\s*(insert|update|delete)/i.test(sql));
    const res = await callWithEnv({ DB: writesFail, DEPLOY_QUEUE: queue }, "POST", `/v1/agents/${s.agent.id}/deploy`, {
      headers: s.headers,
      body: { moduleCode: modules.fixedAnswer("outage") },
    });
    await expectProblem(res, 503, "service_unavailable");
    expect(queue.sent).toEqual([]);
    expect(await tenantState(s.userId)).toEqual(before);
  });
});
