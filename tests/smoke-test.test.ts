// The opt-in smoke test: the deploy job invokes the new deployment before moving the pointer; a
// failing smoke test ends it `failed` with what the agent answered, and the previous deployment
// keeps serving. Smoke invocations are metered as such and never count against the quota.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import { createDeployment } from "../src/services/deployments/create";
import { processDeployJob } from "../src/services/deployments/deploy-job";
import * as modules from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import {
  createAgent,
  deploy,
  deployAndActivate,
  expectPointerInvariant,
  userIdOf,
  userMessage,
  waitUntilSettled,
} from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { fakeDispatcher, namespaceSetup } from "./helpers/namespace";

const answerOf = async (headers: Record<string, string>, agentId: string) =>
  (await json(await call("POST", `/v1/invoke/${agentId}`, { headers, body: userMessage("x") }))).output.text;

describe("deploy with smokeTest", () => {
  it("a failing smoke test ends the deployment failed with status and body, and the pointer stays", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
    const bad = await deploy(headers, agent.id, {
      moduleCode: modules.ANSWERS_500,
      smokeTest: { request: userMessage("are you ok?") },
    });
    const settled = await waitUntilSettled(headers, agent.id, bad.id);
    expect(settled.status).toBe("failed");
    expect(settled.errorMessage).toBe('the smoke test expected status 200 and got 500: {"error":"agent is sad"}');
    expect(await expectPointerInvariant(agent.id)).toBe(v1.id);
    expect(await answerOf(headers, agent.id)).toBe("v1");
  });

  it("a throwing handler fails the smoke test with the exception; expectStatus can ask for another status", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const threw = await deploy(headers, agent.id, {
      moduleCode: modules.ALWAYS_THROWS,
      smokeTest: { request: userMessage("hi") },
    });
    const settled = await waitUntilSettled(headers, agent.id, threw.id);
    expect(settled.status).toBe("failed");
    expect(settled.errorMessage).toMatch(/^the smoke test got an exception: .*always broken/);
    const fiveHundred = await deploy(headers, agent.id, {
      moduleCode: modules.ANSWERS_500,
      smokeTest: { request: userMessage("hi"), expectStatus: 500 },
    });
    expect((await waitUntilSettled(headers, agent.id, fiveHundred.id)).status).toBe("active");
  });

  it("a passing smoke test activates; the smoke invocation is metered as smoke_test and not billed as a request", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const d = await deploy(headers, agent.id, {
      moduleCode: modules.READS_JSON_ALWAYS,
      smokeTest: { request: userMessage("smoke"), timeoutMs: 5000 },
    });
    const settled = await waitUntilSettled(headers, agent.id, d.id);
    expect(settled).toMatchObject({ status: "active", errorMessage: null });
    const events = await env.DB.prepare("SELECT kind, source, status FROM metrics_events WHERE deployment_id = ?")
      .bind(d.id)
      .all();
    expect(events.results).toEqual([{ kind: "smoke_test", source: "gateway", status: "ok" }]);
    const billed = await env.DB.prepare("SELECT COALESCE(SUM(requests), 0) AS n FROM billing_usage WHERE agent_id = ?")
      .bind(agent.id)
      .first<{ n: number }>();
    expect(billed?.n).toBe(0);
  });

  it("refuses a smokeTest whose request is not an invoke/v1 body", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: { smokeTest: { request: { hi: 1 } } } }),
      400,
      "validation_failed",
    );
    expect(problem.errors[0].location).toMatch(/^body\.smokeTest\.request/);
  });
});

describe("deploy with smokeTest in namespace mode", () => {
  it("invokes the uploaded script through the dispatcher before activation; a failure leaves the pointer and removes the script", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const userId = await userIdOf(user.subject);
    const config = await getConfig(env);
    const db = createDb(env.DB);
    const seen: Array<{ name: string; path: string; body: unknown; pointer: string | null }> = [];
    const dispatcher = fakeDispatcher(async (name, request) => {
      const pointer = await expectPointerInvariant(agent.id);
      seen.push({ name, path: new URL(request.url).pathname, body: await request.json(), pointer });
      return Response.json({ error: "not today" }, { status: 503 });
    });
    const { api, runtime } = namespaceSetup({ dispatcher });
    const deps = { db, userId, keyring: config.keyring, tierLimits: config.tierLimits, artifacts: env.ARTIFACTS };
    const d = await createDeployment({ ...deps, queue: { send: async () => {} } }, agent.id, {
      moduleCode: modules.fixedAnswer("ns"),
      smokeTest: { request: userMessage("ping") },
    });
    expect(await processDeployJob({ ...deps, runtime }, { deploymentId: d.id }, 1)).toEqual({
      action: "ack",
      result: "failed",
    });
    expect(seen).toEqual([{ name: d.scriptName, path: "/invoke", body: userMessage("ping"), pointer: null }]);
    expect(dispatcher.calls[0]?.options).toMatchObject({ limits: { cpuMs: 50, subRequests: 50 } });
    const row = await env.DB.prepare("SELECT status, error_message FROM deployments WHERE id = ?")
      .bind(d.id)
      .first<{ status: string; error_message: string }>();
    expect(row).toEqual({
      status: "failed",
      error_message: 'the smoke test expected status 200 and got 503: {"error":"not today"}',
    });
    expect(await expectPointerInvariant(agent.id)).toBeNull();
    expect(api.scripts.has(d.scriptName)).toBe(false);
  });
});
