// The deploy queue consumer, driven directly: deployments are created through the service with a
// queue that drops the job, so only the deliveries each test makes reach the consumer.
import {
  createExecutionContext,
  createMessageBatch,
  createScheduledController,
  getQueueResult,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import worker from "../src/index";
import { createRuntimeProvider } from "../src/runtime";
import { RuntimeError, type RuntimeProvider } from "../src/runtime/types";
import { createDeployment } from "../src/services/deployments/create";
import {
  CLAIM_LEASE_MS,
  DEPLOY_MAX_ATTEMPTS,
  processDeployJob,
  STUCK_DEPLOYMENT_MS,
} from "../src/services/deployments/deploy-job";
import * as modules from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import { createAgent, expectPointerInvariant, userIdOf, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { waitFor } from "./helpers/wait";

const db = createDb(env.DB);
let messageSeq = 0;

async function setup() {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  const userId = await userIdOf(user.subject);
  const { keyring, tierLimits } = await getConfig(env);
  const sent: unknown[] = [];
  const newDeployment = async (moduleCode = modules.fixedAnswer("queued")) =>
    createDeployment(
      {
        db,
        userId,
        keyring,
        tierLimits,
        artifacts: env.ARTIFACTS,
        queue: { send: async (job) => void sent.push(job) },
      },
      agent.id,
      { moduleCode },
    );
  return { ...user, agent, userId, keyring, newDeployment, sent };
}

async function deliver(bodies: unknown[], queue = "deploy-jobs", attempts = 1) {
  const messages = bodies.map((body) => ({ id: `msg-${++messageSeq}`, timestamp: new Date(), attempts, body }));
  const batch = createMessageBatch(queue, messages);
  const ctx = createExecutionContext();
  await worker.queue(batch, env, ctx);
  const result = await getQueueResult(batch, ctx);
  return { ids: messages.map((m) => m.id), result };
}

async function row(deploymentId: string) {
  return (await env.DB.prepare("SELECT * FROM deployments WHERE id = ?")
    .bind(deploymentId)
    .first<Record<string, any>>())!;
}

async function runtimeFor(): Promise<RuntimeProvider> {
  return createRuntimeProvider({ env, ctx: createExecutionContext(), config: await getConfig(env) });
}

function fakeRuntime(deploy: RuntimeProvider["deploy"]): RuntimeProvider {
  return { deploy, invoke: async () => new Response("unused"), remove: async () => {} };
}

describe("deploy consumer: deliveries", () => {
  it("activates on the first delivery; a later duplicate is acked and changes nothing", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    expect(s.sent).toEqual([{ deploymentId: d.id }]);
    const first = await deliver([{ deploymentId: d.id }]);
    expect(first.result.explicitAcks).toEqual(first.ids);
    const afterFirst = await row(d.id);
    expect(afterFirst).toMatchObject({ status: "active", error_message: null });
    expect(afterFirst.activated_at).toBe(afterFirst.first_activated_at);
    expect(await expectPointerInvariant(s.agent.id)).toBe(d.id);

    const dup = await deliver([{ deploymentId: d.id }]);
    expect(dup.result.explicitAcks).toEqual(dup.ids);
    expect(dup.result.retryMessages).toEqual([]);
    expect(await row(d.id)).toEqual(afterFirst);
  });

  it("lets one of two concurrent duplicates deploy; the other backs off and is later acked unchanged", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    const both = await deliver([{ deploymentId: d.id }, { deploymentId: d.id }]);
    expect(both.result.explicitAcks).toHaveLength(1);
    expect(both.result.retryMessages).toHaveLength(1);
    const settled = await row(d.id);
    expect(settled.status).toBe("active");
    const late = await deliver([{ deploymentId: d.id }], "deploy-jobs", 2);
    expect(late.result.explicitAcks).toEqual(late.ids);
    expect(await row(d.id)).toEqual(settled);
    expect(await expectPointerInvariant(s.agent.id)).toBe(d.id);
  });

  it("keeps a newer deployment that finished first; the older one ends inactive and cannot be rolled back to", async () => {
    const s = await setup();
    const older = await s.newDeployment(modules.fixedAnswer("older"));
    const newer = await s.newDeployment(modules.fixedAnswer("newer"));
    await deliver([{ deploymentId: newer.id }]);
    expect(await expectPointerInvariant(s.agent.id)).toBe(newer.id);
    await deliver([{ deploymentId: older.id }]);
    expect((await row(older.id)).status).toBe("inactive");
    expect((await row(older.id)).first_activated_at).toBeNull();
    expect((await row(newer.id)).status).toBe("active");
    expect(await expectPointerInvariant(s.agent.id)).toBe(newer.id);
    const res = await call("POST", `/v1/invoke/${s.agent.id}`, { headers: s.headers, body: userMessage("x") });
    expect((await json(res)).output.text).toBe("newer");
    await expectProblem(
      await call("POST", `/v1/agents/${s.agent.id}/deployments/${older.id}/activate`, { headers: s.headers }),
      409,
      "deployment_not_activatable",
    );
  });

  it("moves the pointer on each in-order completion and demotes the previous deployment", async () => {
    const s = await setup();
    const a = await s.newDeployment(modules.fixedAnswer("a"));
    const b = await s.newDeployment(modules.fixedAnswer("b"));
    await deliver([{ deploymentId: a.id }]);
    expect(await expectPointerInvariant(s.agent.id)).toBe(a.id);
    await deliver([{ deploymentId: b.id }]);
    expect(await expectPointerInvariant(s.agent.id)).toBe(b.id);
    expect((await row(a.id)).status).toBe("inactive");
    expect((await row(a.id)).first_activated_at).not.toBeNull();
  });

  it("acks and drops message bodies it cannot read, and jobs for unknown deployments", async () => {
    const bodies = [{}, "dep_x", 42, null, { deploymentId: 5 }, { deploymentId: "dep_x", extra: 1 }];
    const invalid = await deliver(bodies);
    expect(invalid.result.explicitAcks.sort()).toEqual([...invalid.ids].sort());
    expect(invalid.result.retryMessages).toEqual([]);
    const unknown = await deliver([{ deploymentId: "dep_00000000000000000000000000" }]);
    expect(unknown.result.explicitAcks).toEqual(unknown.ids);
  });

  it("fails a module that throws at load time without retrying it", async () => {
    const s = await setup();
    const d = await s.newDeployment(modules.THROWS_AT_LOAD);
    const { ids, result } = await deliver([{ deploymentId: d.id }]);
    expect(result.explicitAcks).toEqual(ids);
    expect(await row(d.id)).toMatchObject({ status: "failed", activated_at: null });
    expect((await row(d.id)).error_message).toContain("kaboom at load time");
    expect(await expectPointerInvariant(s.agent.id)).toBeNull();
  });
});

describe("deploy consumer: claims, retries and failures", () => {
  const deps = async (runtime: RuntimeProvider) => ({
    db,
    keyring: (await getConfig(env)).keyring,
    runtime,
    artifacts: env.ARTIFACTS,
  });

  it("releases the claim on a transient error and retries with growing backoff; a later attempt activates", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    const flaky = fakeRuntime(async () => {
      throw new RuntimeError("unavailable", "the runtime is overloaded", true);
    });
    const first = await processDeployJob(await deps(flaky), { deploymentId: d.id }, 1);
    expect(first).toMatchObject({ action: "retry", result: "transient_error", delaySeconds: 2 });
    expect(await row(d.id)).toMatchObject({ status: "deploying", claimed_at: null });
    const third = await processDeployJob(await deps(flaky), { deploymentId: d.id }, 3);
    expect(third).toMatchObject({ action: "retry", delaySeconds: 8 });
    const ok = await processDeployJob(await deps(await runtimeFor()), { deploymentId: d.id }, 4);
    expect(ok).toEqual({ action: "ack", result: "active" });
    expect(await expectPointerInvariant(s.agent.id)).toBe(d.id);
  });

  it("fails with the platform's generic message when the last attempt still meets a transient error", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    const flaky = fakeRuntime(async () => {
      throw new RuntimeError("unavailable", "the runtime is overloaded", true);
    });
    const last = await processDeployJob(await deps(flaky), { deploymentId: d.id }, DEPLOY_MAX_ATTEMPTS);
    expect(last).toEqual({ action: "ack", result: "failed" });
    expect(await row(d.id)).toMatchObject({
      status: "failed",
      // The runtime's failure is the platform's: the tenant gets a reference, not its text.
      error_message: `the platform failed to deploy this agent; quote ref ${d.id} when reporting it`,
    });
  });

  it("fails at once on a permanent error", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    const broken = fakeRuntime(async () => {
      throw new RuntimeError("load_failed", "the bundle failed to load: nope", false);
    });
    expect(await processDeployJob(await deps(broken), { deploymentId: d.id }, 1)).toEqual({
      action: "ack",
      result: "failed",
    });
    expect((await row(d.id)).error_message).toBe("the bundle failed to load: nope");
  });

  it("backs off while another delivery holds a live claim, and takes over a claim whose lease expired", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    await env.DB.prepare("UPDATE deployments SET claimed_at = ? WHERE id = ?").bind(Date.now(), d.id).run();
    const blocked = await processDeployJob(await deps(await runtimeFor()), { deploymentId: d.id }, 1);
    expect(blocked).toMatchObject({ action: "retry", result: "claimed_elsewhere" });
    expect(blocked.action === "retry" && blocked.delaySeconds).toBeGreaterThan(0);
    expect(blocked.action === "retry" && blocked.delaySeconds).toBeLessThanOrEqual(CLAIM_LEASE_MS / 1000);
    expect((await row(d.id)).status).toBe("deploying");

    await env.DB.prepare("UPDATE deployments SET claimed_at = ? WHERE id = ?")
      .bind(Date.now() - CLAIM_LEASE_MS - 1000, d.id)
      .run();
    expect(await processDeployJob(await deps(await runtimeFor()), { deploymentId: d.id }, 2)).toEqual({
      action: "ack",
      result: "active",
    });
  });

  it("changes nothing when its claim was taken over while it deployed", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    const slowHolder = fakeRuntime(async () => {
      // Meanwhile the lease lapsed and another delivery claimed the deployment.
      await env.DB.prepare("UPDATE deployments SET claimed_at = claimed_at + 1 WHERE id = ?").bind(d.id).run();
    });
    expect(await processDeployJob(await deps(slowHolder), { deploymentId: d.id }, 1)).toEqual({
      action: "ack",
      result: "claim_lost",
    });
    expect((await row(d.id)).status).toBe("deploying");
    expect(await expectPointerInvariant(s.agent.id)).toBeNull();
  });
});

describe("deploy consumer: typed jobs", () => {
  it("deleting an agent queues the cleanup of its scripts, which the consumer runs", async () => {
    const s = await setup();
    const d = await s.newDeployment();
    await deliver([{ deploymentId: d.id }]);
    expect((await call("DELETE", `/v1/agents/${s.agent.id}`, { headers: s.headers })).status).toBe(204);
    // The real consumer picks the job up from the queue the route sent it to.
    await waitFor(async () => ((await row(d.id)).script_removed_at !== null ? true : undefined), {
      what: "the agent's scripts to be removed",
    });
  });

  it("acks a cleanup job delivered directly, and a dead-lettered one", async () => {
    const s = await setup();
    await s.newDeployment();
    await call("DELETE", `/v1/agents/${s.agent.id}`, { headers: s.headers });
    const job = { type: "cleanup_agent_scripts", userId: s.userId, agentId: s.agent.id };
    const direct = await deliver([job]);
    expect(direct.result.explicitAcks).toEqual(direct.ids);
    const dead = await deliver([job], "deploy-jobs-dlq");
    expect(dead.result.explicitAcks).toEqual(dead.ids);
  });
});

describe("deploy consumer: dead letters and the cron sweep", () => {
  it("the dead-letter consumer fails a deployment still deploying, exactly once, and leaves finished ones alone", async () => {
    const s = await setup();
    const stuck = await s.newDeployment();
    const done = await s.newDeployment();
    await deliver([{ deploymentId: done.id }]);
    const dlq = await deliver([{ deploymentId: stuck.id }, { deploymentId: done.id }, "garbage"], "deploy-jobs-dlq");
    expect(dlq.result.explicitAcks.sort()).toEqual([...dlq.ids].sort());
    const failed = await row(stuck.id);
    expect(failed).toMatchObject({
      status: "failed",
      error_message: "the deploy job exhausted its retries without finishing; deploy again",
    });
    expect((await row(done.id)).status).toBe("active");
    await deliver([{ deploymentId: stuck.id }], "deploy-jobs-dlq");
    expect(await row(stuck.id)).toEqual(failed);
    expect(await expectPointerInvariant(s.agent.id)).toBe(done.id);
  });

  it("the cron sweep fails deployments stuck in deploying past the limit and spares recent ones", async () => {
    const s = await setup();
    const old = await s.newDeployment();
    const recent = await s.newDeployment();
    const longAgo = Date.now() - STUCK_DEPLOYMENT_MS - 60_000;
    await env.DB.prepare("UPDATE deployments SET created_at = ? WHERE id = ?").bind(longAgo, old.id).run();
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: Date.now(), cron: "*/5 * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    expect(await row(old.id)).toMatchObject({
      status: "failed",
      error_message: `the deployment did not finish within ${STUCK_DEPLOYMENT_MS / 60_000} minutes; deploy again`,
    });
    expect((await row(recent.id)).status).toBe("deploying");
    // A late delivery of the swept job changes nothing.
    const late = await deliver([{ deploymentId: old.id }]);
    expect(late.result.explicitAcks).toEqual(late.ids);
    expect((await row(old.id)).status).toBe("failed");
  });
});
