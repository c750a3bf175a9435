// Manual activation and preview: a deploy with `activation: "manual"` that passes its checks ends
// `ready` (runnable, not serving; the pointer stays); any ready, active or inactive deployment of
// the caller's agent can be invoked by id through x-webhost-deployment (metered as kind `preview`,
// billed like an invocation); activate makes a ready deployment active.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import * as modules from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import {
  createAgent,
  deploy,
  deployAndActivate,
  expectPointerInvariant,
  getDeployment,
  userMessage,
  waitUntilSettled,
} from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";
import { waitFor } from "./helpers/wait";

type Headers = Record<string, string>;

async function invoke(headers: Headers, agentId: string, deploymentId?: string, path = "") {
  const h = deploymentId === undefined ? headers : { ...headers, "x-webhost-deployment": deploymentId };
  return call("POST", `/v1/invoke/${agentId}${path}`, { headers: h, body: userMessage("which version?") });
}

async function answerOf(headers: Headers, agentId: string, deploymentId?: string) {
  const res = await invoke(headers, agentId, deploymentId);
  expect(res.status).toBe(200);
  return { text: (await json(res)).output.text as string, servedBy: res.headers.get("x-deployment-id") };
}

describe("manual activation", () => {
  it("a manual deploy ends ready, the pointer stays and the old one serves; a preview answers from it, metered as preview; activate makes it serve", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
    const v2 = await deploy(headers, agent.id, { moduleCode: modules.fixedAnswer("v2"), activation: "manual" });
    expect(v2.activation).toBe("manual");
    const settled = await waitUntilSettled(headers, agent.id, v2.id);
    expect(settled).toMatchObject({ status: "ready", activation: "manual", activatedAt: null, errorMessage: null });
    expect(await expectPointerInvariant(agent.id)).toBe(v1.id);
    expect(await answerOf(headers, agent.id)).toEqual({ text: "v1", servedBy: v1.id });

    // Preview of the ready one, JSON and stream, and of the active one by id.
    expect(await answerOf(headers, agent.id, v2.id)).toEqual({ text: "v2", servedBy: v2.id });
    const streamed = await invoke(headers, agent.id, v2.id, "/stream");
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get("x-deployment-id")).toBe(v2.id);
    expect(await streamed.text()).toContain("v2");
    expect(await answerOf(headers, agent.id, v1.id)).toEqual({ text: "v1", servedBy: v1.id });

    // Metered as preview (shown so by the metrics API) and billed like any invocation.
    const previewEvents = await waitFor(
      async () => {
        const res = await call("GET", `/v1/metrics/recent?agentId=${agent.id}`, { headers });
        const events = (await json(res)).events as Array<{ kind: string; deploymentId: string; source: string }>;
        const previews = events.filter((e) => e.kind === "preview");
        return previews.length === 3 ? events : undefined;
      },
      { what: "three preview events" },
    );
    expect(
      previewEvents
        .filter((e) => e.source === "gateway" && e.kind === "preview")
        .map((e) => e.deploymentId)
        .sort(),
    ).toEqual([v1.id, v2.id, v2.id].sort());
    expect(previewEvents.filter((e) => e.kind === "invoke").map((e) => e.deploymentId)).toEqual([v1.id]);
    const billed = await waitFor(async () => {
      const row = await env.DB.prepare("SELECT COALESCE(SUM(requests), 0) AS n FROM billing_usage WHERE agent_id = ?")
        .bind(agent.id)
        .first<{ n: number }>();
      return row?.n === 4 ? row.n : undefined;
    });
    expect(billed).toBe(4);

    // Activate the ready one: it serves, the previous one is inactive (and still previewable).
    const res = await call("POST", `/v1/agents/${agent.id}/deployments/${v2.id}/activate`, { headers });
    expect(res.status).toBe(200);
    expect((await json(res)).deployment).toMatchObject({ id: v2.id, status: "active" });
    expect(await expectPointerInvariant(agent.id)).toBe(v2.id);
    expect((await getDeployment(headers, agent.id, v1.id)).status).toBe("inactive");
    expect(await answerOf(headers, agent.id)).toEqual({ text: "v2", servedBy: v2.id });
    expect(await answerOf(headers, agent.id, v1.id)).toEqual({ text: "v1", servedBy: v1.id });

    // And it can be rolled back from, like any deployment that went active.
    const back = await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, { headers });
    expect(back.status).toBe(200);
    expect((await getDeployment(headers, agent.id, v2.id)).status).toBe("inactive");
    expect(await expectPointerInvariant(agent.id)).toBe(v1.id);
  });

  it("a manual deploy on an agent with nothing active ends ready; the agent still has no active deployment", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const d = await deploy(headers, agent.id, { moduleCode: modules.fixedAnswer("first"), activation: "manual" });
    expect((await waitUntilSettled(headers, agent.id, d.id)).status).toBe("ready");
    expect(await expectPointerInvariant(agent.id)).toBeNull();
    await expectProblem(await invoke(headers, agent.id), 409, "no_active_deployment");
    expect(await answerOf(headers, agent.id, d.id)).toEqual({ text: "first", servedBy: d.id });
  });

  it("refuses an activation value that is not auto or manual", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: { activation: "later" } }),
      400,
      "validation_failed",
    );
    expect(problem.errors[0].location).toBe("body.activation");
  });
});

describe("preview: what cannot be invoked by id", () => {
  it("another tenant's deployment, another agent's, and a malformed id are 404; a failed deployment is 409", async () => {
    const owner = await newUser();
    const stranger = await newUser();
    const agent = await createAgent(owner.headers);
    const other = await createAgent(owner.headers);
    const mine = await deployAndActivate(owner.headers, agent.id, { moduleCode: modules.fixedAnswer("mine") });
    const otherAgents = await deployAndActivate(owner.headers, other.id, { moduleCode: modules.fixedAnswer("o") });
    const strangerAgent = await createAgent(stranger.headers);
    const theirs = await deployAndActivate(stranger.headers, strangerAgent.id, {
      moduleCode: modules.fixedAnswer("theirs"),
    });

    // The stranger names the owner's deployment on their own agent, and on the owner's agent.
    await expectProblem(await invoke(stranger.headers, strangerAgent.id, mine.id), 404, "not_found");
    await expectProblem(await invoke(stranger.headers, agent.id, mine.id), 404, "not_found");
    // The owner names a deployment of another of their agents, the stranger's, and garbage.
    await expectProblem(await invoke(owner.headers, agent.id, otherAgents.id), 404, "not_found");
    await expectProblem(await invoke(owner.headers, agent.id, theirs.id), 404, "not_found");
    for (const bad of ["nope", "", `dep_${"z".repeat(200)}`, "dep_01jd0000000000000000000000"]) {
      await expectProblem(await invoke(owner.headers, agent.id, bad), 404, "not_found");
      await expectProblem(await invoke(owner.headers, agent.id, bad, "/stream"), 404, "not_found");
    }

    const failed = await deploy(owner.headers, agent.id, { moduleCode: modules.THROWS_AT_LOAD });
    expect((await waitUntilSettled(owner.headers, agent.id, failed.id)).status).toBe("failed");
    const problem = await expectProblem(
      await invoke(owner.headers, agent.id, failed.id),
      409,
      "deployment_not_invocable",
    );
    expect(problem.deploymentStatus).toBe("failed");
    expect(problem.detail).toContain("failed");
    expect(await answerOf(owner.headers, agent.id)).toEqual({ text: "mine", servedBy: mine.id });
  });

  it("a deployment whose code retention removed is 409 deployment_not_invocable", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
    await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v2") });
    await env.DB.prepare("UPDATE deployments SET script_removed_at = ? WHERE id = ?").bind(Date.now(), v1.id).run();
    const problem = await expectProblem(await invoke(headers, agent.id, v1.id), 409, "deployment_not_invocable");
    expect(problem.detail).toContain("removed");
  });
});
