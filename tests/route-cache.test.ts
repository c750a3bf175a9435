// The invoke route cache (src/services/invoke/route-cache.ts) never makes the product wrong:
// - its staleness rule, exactly, with an injected clock: a read is served for ROUTE_CACHE_TTL_MS
//   and never after, for each of the four routing changes made by "another isolate" (straight in D1);
// - over HTTP: the four changes made through the API take effect for the very next invocation
//   (this isolate forgets its entry), and made straight in D1 they take effect within 2 s;
// - a cached route is only ever served to the user it was read for, and a deleted agent's route
//   to nobody.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Db } from "../src/db/client";
import { agentRoute, ROUTE_CACHE_TTL_MS } from "../src/services/invoke/route-cache";
import { fixedAnswer } from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import { createAgent, deploy, deployAndActivate, userMessage, waitUntilSettled } from "./helpers/deploy-flow";
import { db, insertDeployment, insertUserAndAgent } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";

/** What "another isolate" commits: the pointer and statuses as activate/deploy leave them. */
async function pointAgentAt(agentId: string, deploymentId: string | null) {
  const now = Date.now();
  await env.DB.batch([
    env.DB.prepare("UPDATE deployments SET status = 'inactive' WHERE agent_id = ? AND status = 'active'").bind(agentId),
    env.DB.prepare(
      "UPDATE deployments SET status = 'active', first_activated_at = COALESCE(first_activated_at, ?) WHERE id = ?",
    ).bind(now, deploymentId),
    env.DB.prepare("UPDATE agents SET active_deployment_id = ? WHERE id = ?").bind(deploymentId, agentId),
  ]);
}

async function disableInD1(agentId: string) {
  await env.DB.prepare("UPDATE agents SET status = 'disabled' WHERE id = ?").bind(agentId).run();
}

async function deleteInD1(agentId: string) {
  const now = Date.now();
  await env.DB.prepare("UPDATE agents SET status = 'disabled', deleted_at = ? WHERE id = ?").bind(now, agentId).run();
}

function routedTo(route: Awaited<ReturnType<typeof agentRoute>>): string {
  return route.kind === "deployment" ? route.deployment.id : route.kind;
}

describe("route cache: the staleness rule, with an injected clock", () => {
  // Each test gets its own clock origin far from the others and from real time, so entries
  // made by one test can never be read as fresh by another.
  let origin = Date.now() + 10 * 60_000;
  const clock = () => {
    origin += 60_000;
    return origin;
  };

  async function agentWithTwoDeployments() {
    const { userId, agentId } = await insertUserAndAgent();
    const older = await insertDeployment({ userId, agentId, createdAt: Date.now() - 1000 });
    const newer = await insertDeployment({ userId, agentId });
    return { userId, agentId, older, newer };
  }

  it("serves a rollback made elsewhere from the cache for less than ROUTE_CACHE_TTL_MS, and the new route from then on", async () => {
    const { userId, agentId, older, newer } = await agentWithTwoDeployments();
    await pointAgentAt(agentId, newer);
    const t = clock();
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t }))).toBe(newer);
    await pointAgentAt(agentId, older);
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + ROUTE_CACHE_TTL_MS - 1 }))).toBe(newer);
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + ROUTE_CACHE_TTL_MS }))).toBe(older);
    expect(ROUTE_CACHE_TTL_MS).toBeLessThanOrEqual(2000);
  });

  it("routes to a deployment that became active elsewhere once the cached 'no active deployment' is ROUTE_CACHE_TTL_MS old", async () => {
    const { userId, agentId, newer } = await agentWithTwoDeployments();
    const t = clock();
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t }))).toBe("no_active_deployment");
    await pointAgentAt(agentId, newer);
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + ROUTE_CACHE_TTL_MS - 1 }))).toBe(
      "no_active_deployment",
    );
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + ROUTE_CACHE_TTL_MS }))).toBe(newer);
  });

  it("stops routing to a deployment of an agent disabled elsewhere once the entry is ROUTE_CACHE_TTL_MS old", async () => {
    const { userId, agentId, newer } = await agentWithTwoDeployments();
    await pointAgentAt(agentId, newer);
    const t = clock();
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t }))).toBe(newer);
    await disableInD1(agentId);
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + ROUTE_CACHE_TTL_MS }))).toBe("disabled");
  });

  it("stops routing to a deployment of an agent deleted elsewhere once the entry is ROUTE_CACHE_TTL_MS old", async () => {
    const { userId, agentId, newer } = await agentWithTwoDeployments();
    await pointAgentAt(agentId, newer);
    const t = clock();
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t }))).toBe(newer);
    await deleteInD1(agentId);
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + ROUTE_CACHE_TTL_MS }))).toBe("not_found");
  });

  it("never serves one user's cached route to another user, even while it is fresh", async () => {
    const { userId, agentId, newer } = await agentWithTwoDeployments();
    const stranger = await insertUserAndAgent();
    await pointAgentAt(agentId, newer);
    const t = clock();
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t }))).toBe(newer);
    expect(routedTo(await agentRoute(db, { userId: stranger.userId, agentId }, { now: t + 1 }))).toBe("not_found");
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + 2 }))).toBe(newer);
  });

  it("does not remember a failed read: the next lookup reads D1 again", async () => {
    const { userId, agentId, newer } = await agentWithTwoDeployments();
    await pointAgentAt(agentId, newer);
    const failing = {
      select: () => {
        throw new Error("D1 is down");
      },
    } as unknown as Db;
    const t = clock();
    await expect(agentRoute(failing, { userId, agentId }, { now: t })).rejects.toThrow("D1 is down");
    expect(routedTo(await agentRoute(db, { userId, agentId }, { now: t + 1 }))).toBe(newer);
  });

  it("shares one read between concurrent lookups of a missing entry", async () => {
    const { userId, agentId, newer } = await agentWithTwoDeployments();
    await pointAgentAt(agentId, newer);
    let selects = 0;
    const counting = new Proxy(db, {
      get(target, prop, receiver) {
        if (prop === "select") selects++;
        return Reflect.get(target, prop, receiver);
      },
    });
    const t = clock();
    const routes = await Promise.all(
      Array.from({ length: 5 }, (_, i) => agentRoute(counting, { userId, agentId }, { now: t + i })),
    );
    expect(routes.map(routedTo)).toEqual(Array(5).fill(newer));
    expect(selects).toBe(1);
  });
});

async function ownerWithTwoVersions() {
  const owner = await newUser("route-owner");
  const agent = await createAgent(owner.headers);
  const v1 = await deployAndActivate(owner.headers, agent.id, { moduleCode: fixedAnswer("v1") });
  const v2 = await deployAndActivate(owner.headers, agent.id, { moduleCode: fixedAnswer("v2") });
  return { owner, agent, v1, v2 };
}

async function invoke(headers: Record<string, string>, agentId: string) {
  return call("POST", `/v1/invoke/${agentId}`, { headers, body: userMessage("which version?") });
}

async function answeredBy(headers: Record<string, string>, agentId: string): Promise<string> {
  const res = await invoke(headers, agentId);
  if (res.status !== 200) return `HTTP ${res.status} ${(await json(res)).code}`;
  await res.text();
  return res.headers.get("x-deployment-id") ?? "no deployment header";
}

/** Polls invocations until `expected` is what they see; returns ms from `since` to that answer. */
async function msUntilInvocationsSee(probe: () => Promise<string>, expected: string, since: number) {
  for (;;) {
    const seen = await probe();
    if (seen === expected) return Date.now() - since;
    if (Date.now() - since > 5000) throw new Error(`still "${seen}" 5 s after the change; expected "${expected}"`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("route cache over HTTP: changes made through this isolate's API apply to the next invocation", () => {
  it("a rollback (activate) routes the very next invocation to the activated deployment", async () => {
    const { owner, agent, v1, v2 } = await ownerWithTwoVersions();
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    const res = await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, { headers: owner.headers });
    expect(res.status).toBe(200);
    expect(await answeredBy(owner.headers, agent.id)).toBe(v1.id);
  });

  it("a new deployment routes invocations to itself within 2 s of reporting active", async () => {
    const { owner, agent, v2 } = await ownerWithTwoVersions();
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    const v3 = await deploy(owner.headers, agent.id, { moduleCode: fixedAnswer("v3") });
    expect((await waitUntilSettled(owner.headers, agent.id, v3.id)).status).toBe("active");
    const since = Date.now();
    expect(await msUntilInvocationsSee(() => answeredBy(owner.headers, agent.id), v3.id, since)).toBeLessThanOrEqual(
      2000,
    );
  });

  it("a disable refuses the very next invocation", async () => {
    const { owner, agent, v2 } = await ownerWithTwoVersions();
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    expect((await call("POST", `/v1/agents/${agent.id}/disable`, { headers: owner.headers })).status).toBe(200);
    await expectProblem(await invoke(owner.headers, agent.id), 409, "agent_disabled");
  });

  it("a delete makes the very next invocation a 404, for the owner and for anyone else", async () => {
    const { owner, agent, v2 } = await ownerWithTwoVersions();
    const stranger = await newUser("route-stranger");
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    expect((await call("DELETE", `/v1/agents/${agent.id}`, { headers: owner.headers })).status).toBe(204);
    await expectProblem(await invoke(owner.headers, agent.id), 404, "not_found");
    await expectProblem(await invoke(stranger.headers, agent.id), 404, "not_found");
  });

  it("never serves the owner's cached route to another user", async () => {
    const { owner, agent, v2 } = await ownerWithTwoVersions();
    const stranger = await newUser("route-stranger");
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    await expectProblem(await invoke(stranger.headers, agent.id), 404, "not_found");
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}/stream`, { headers: stranger.headers, body: userMessage("x") }),
      404,
      "not_found",
    );
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
  });
});

describe("route cache over HTTP: changes committed by another isolate apply within 2 s", () => {
  // The change goes straight to D1, as another isolate's write would: nothing here tells this
  // isolate's cache, so only the staleness rule brings invocations up to date.
  it("a rollback", async () => {
    const { owner, agent, v1, v2 } = await ownerWithTwoVersions();
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    await pointAgentAt(agent.id, v1.id);
    const since = Date.now();
    expect(await msUntilInvocationsSee(() => answeredBy(owner.headers, agent.id), v1.id, since)).toBeLessThanOrEqual(
      2000,
    );
  });

  it("a new active deployment", async () => {
    const { owner, agent, v1, v2 } = await ownerWithTwoVersions();
    await pointAgentAt(agent.id, null);
    await pointAgentAt(agent.id, v1.id); // v2 is now the "new" one, not active
    expect(await msUntilInvocationsSee(() => answeredBy(owner.headers, agent.id), v1.id, Date.now())).toBeLessThan(
      5000,
    );
    await pointAgentAt(agent.id, v2.id);
    const since = Date.now();
    expect(await msUntilInvocationsSee(() => answeredBy(owner.headers, agent.id), v2.id, since)).toBeLessThanOrEqual(
      2000,
    );
  });

  it("a disable", async () => {
    const { owner, agent, v2 } = await ownerWithTwoVersions();
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    await disableInD1(agent.id);
    const since = Date.now();
    expect(
      await msUntilInvocationsSee(() => answeredBy(owner.headers, agent.id), "HTTP 409 agent_disabled", since),
    ).toBeLessThanOrEqual(2000);
  });

  it("a delete, after which nobody is served the deleted agent's route", async () => {
    const { owner, agent, v2 } = await ownerWithTwoVersions();
    const stranger = await newUser("route-stranger");
    expect(await answeredBy(owner.headers, agent.id)).toBe(v2.id);
    await deleteInD1(agent.id);
    const since = Date.now();
    expect(
      await msUntilInvocationsSee(() => answeredBy(owner.headers, agent.id), "HTTP 404 not_found", since),
    ).toBeLessThanOrEqual(2000);
    expect(await answeredBy(stranger.headers, agent.id)).toBe("HTTP 404 not_found");
  });
});
