// The gateway end to end: real HTTP against `wrangler dev` (started once by global-setup.ts),
// driven exactly as a client would. "An agent's life" is one story told in order — each step
// builds on the one before — with a stranger checking at every stage that none of the owner's
// things are reachable. Later stages (deploy, invoke, stream, telemetry, metrics, usage,
// rollback) slot into the story where the comments mark them.
import { exportJWK, generateKeyPair } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { api, expectJson, expectProblem, mintToken, newUser, type User } from "./harness";

type Agent = {
  id: string;
  name: string;
  description: string | null;
  status: "active" | "disabled";
  activeDeploymentId: string | null;
  createdAt: number;
  updatedAt: number;
};

async function listAgentIds(user: User): Promise<string[]> {
  const { agents } = await expectJson<{ agents: Agent[] }>(await api("GET", "/v1/agents?limit=100", { user }), 200);
  return agents.map((a) => a.id);
}

/**
 * Every request a stranger could make against someone else's agent. Add each new per-agent route
 * here (deploy, deployments, activate, invoke, stream, metrics…): the isolation checks then cover it.
 */
function strangerAttempts(agentId: string): Array<{ method: string; path: string; body?: unknown }> {
  return [
    { method: "GET", path: `/v1/agents/${agentId}` },
    { method: "PATCH", path: `/v1/agents/${agentId}`, body: { name: "stolen" } },
    { method: "POST", path: `/v1/agents/${agentId}/disable` },
    { method: "DELETE", path: `/v1/agents/${agentId}` },
  ];
}

async function expectLockedOut(stranger: User, agentId: string): Promise<void> {
  for (const attempt of strangerAttempts(agentId)) {
    const res = await api(attempt.method, attempt.path, { user: stranger, body: attempt.body });
    const problem = await expectProblem(res, 404, "not_found");
    expect(problem.detail, `${attempt.method} ${attempt.path}`).not.toContain("stolen");
  }
  expect(await listAgentIds(stranger)).not.toContain(agentId);
}

describe("service surface", () => {
  it("answers /healthz with a request id", async () => {
    const res = await api("GET", "/healthz");
    expect(await expectJson(res, 200)).toEqual({ ok: true });
  });

  it("serves an OpenAPI 3.1 document describing the agents API", async () => {
    const doc = await expectJson<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      await api("GET", "/openapi.json"),
      200,
    );
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths["/v1/agents"] ?? {}).sort()).toEqual(["get", "post"]);
    expect(Object.keys(doc.paths["/v1/agents/{agentId}"] ?? {}).sort()).toEqual(["delete", "get", "patch"]);
    expect(Object.keys(doc.paths["/v1/agents/{agentId}/disable"] ?? {})).toEqual(["post"]);
  });

  it("serves a self-contained HTML docs page listing every documented operation", async () => {
    const doc = await expectJson<{ paths: Record<string, Record<string, unknown>> }>(
      await api("GET", "/openapi.json"),
      200,
    );
    const res = await api("GET", "/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops)) {
        expect(html, `${method} ${path}`).toContain(
          `<code>${method.toUpperCase()}</code></td><td><code>${path}</code>`,
        );
      }
    }
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="https?:/);
  });

  it("answers an unknown route with a 404 problem", async () => {
    await expectProblem(await api("GET", "/no-such-page"), 404, "route_not_found");
  });
});

describe("authentication", () => {
  let outsiderJwk: string;

  beforeAll(async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    outsiderJwk = JSON.stringify({ ...(await exportJWK(privateKey)), kid: "e2e-es256", alg: "ES256" });
  });

  it("refuses a request without credentials, or with credentials that are not a bearer token", async () => {
    await expectProblem(await api("GET", "/v1/agents"), 401, "unauthenticated");
    const basic = { authorization: "Basic dXNlcjpwYXNz" };
    await expectProblem(await api("GET", "/v1/agents", { headers: basic }), 401, "unauthenticated");
  });

  it("refuses garbage, expired, wrong-issuer and unknown-key tokens", async () => {
    const tokens: Record<string, string> = {
      garbage: "not.a.jwt",
      expired: await mintToken("e2e|expired", { expiresIn: -3600 }),
      wrongIssuer: await mintToken("e2e|issuer", { issuer: "https://someone-else.example" }),
      // Same kid as the server's key, different key: the signature must not verify.
      unknownKey: await mintToken("e2e|forger", { signingJwk: outsiderJwk }),
    };
    for (const [label, token] of Object.entries(tokens)) {
      const res = await api("GET", "/v1/agents", { headers: { authorization: `Bearer ${token}` } });
      const problem = await expectProblem(res, 401, "invalid_token");
      expect(problem.detail, label).not.toContain(token);
    }
  });

  it("accepts a token from the run's key and creates the user on first sight", async () => {
    const user = await newUser("first-sight");
    expect(await expectJson(await api("GET", "/v1/agents", { user }), 200)).toEqual({ agents: [], nextCursor: null });
  });
});

describe("an agent's life, seen by its owner and by a stranger", () => {
  let owner: User;
  let stranger: User;
  let agent: Agent;

  beforeAll(async () => {
    owner = await newUser("owner");
    stranger = await newUser("stranger");
  });

  it("creates an agent", async () => {
    const res = await api("POST", "/v1/agents", { user: owner, body: { name: "support-bot", description: "e2e" } });
    ({ agent } = await expectJson<{ agent: Agent }>(res, 201));
    expect(agent).toMatchObject({
      name: "support-bot",
      description: "e2e",
      status: "active",
      activeDeploymentId: null,
    });
    expect(agent.id).toMatch(/^agt_[0-9a-z]{26}$/);
  });

  it("lists and reads it for its owner", async () => {
    expect(await listAgentIds(owner)).toEqual([agent.id]);
    const read = await expectJson<{ agent: Agent }>(await api("GET", `/v1/agents/${agent.id}`, { user: owner }), 200);
    expect(read.agent).toEqual(agent);
  });

  it("keeps it out of the stranger's reach, and lets the stranger use the same name", async () => {
    await expectLockedOut(stranger, agent.id);
    const own = await api("POST", "/v1/agents", { user: stranger, body: { name: "support-bot" } });
    const { agent: theirs } = await expectJson<{ agent: Agent }>(own, 201);
    expect(theirs.id).not.toBe(agent.id);
    expect(await listAgentIds(owner)).toEqual([agent.id]);
  });

  it("refuses a second agent with the same name for the same owner", async () => {
    const clash = await api("POST", "/v1/agents", { user: owner, body: { name: "support-bot" } });
    const problem = await expectProblem(clash, 409, "agent_name_taken");
    expect(problem.errors).toEqual([{ location: "body.name", message: expect.any(String) }]);
  });

  it("renames it and changes its description", async () => {
    const res = await api("PATCH", `/v1/agents/${agent.id}`, {
      user: owner,
      body: { name: "billing-bot", description: null },
    });
    const { agent: renamed } = await expectJson<{ agent: Agent }>(res, 200);
    expect(renamed).toMatchObject({ id: agent.id, name: "billing-bot", description: null, status: "active" });
    expect(renamed.updatedAt).toBeGreaterThanOrEqual(agent.updatedAt);
    agent = renamed;
  });

  // Issue 6 steps to add here once the routes land, in this order:
  //   deploy the template (POST /v1/agents/:id/deploy without moduleCode) and wait for `active`;
  //   deploy a custom SSE module and wait for `active`; invoke JSON; read /stream with readSse()
  //   and check the events arrive incrementally (receivedAt); report telemetry over
  //   POST /v1/telemetry/report with a correct and a tampered signature; read /v1/metrics/recent
  //   and /v1/usage/current; roll back with …/deployments/:id/activate and invoke again.
  // Then add the new per-agent routes to strangerAttempts() and call expectLockedOut() again.

  it("still shows the stranger nothing after the owner's changes", async () => {
    await expectLockedOut(stranger, agent.id);
    const read = await expectJson<{ agent: Agent }>(await api("GET", `/v1/agents/${agent.id}`, { user: owner }), 200);
    expect(read.agent).toEqual(agent);
  });

  it("disables it", async () => {
    const res = await api("POST", `/v1/agents/${agent.id}/disable`, { user: owner });
    const { agent: disabled } = await expectJson<{ agent: Agent }>(res, 200);
    expect(disabled).toMatchObject({ id: agent.id, status: "disabled" });
    const read = await expectJson<{ agent: Agent }>(await api("GET", `/v1/agents/${agent.id}`, { user: owner }), 200);
    expect(read.agent.status).toBe("disabled");
  });

  it("deletes it: every later read is a 404 and it leaves the list", async () => {
    const res = await api("DELETE", `/v1/agents/${agent.id}`, { user: owner });
    expect(res.status).toBe(204);
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    expect(await res.text()).toBe("");
    await expectProblem(await api("GET", `/v1/agents/${agent.id}`, { user: owner }), 404, "not_found");
    await expectProblem(await api("DELETE", `/v1/agents/${agent.id}`, { user: owner }), 404, "not_found");
    expect(await listAgentIds(owner)).toEqual([]);
  });
});

describe("bad requests get a problem+json answer, never a 500", () => {
  let user: User;
  let agentId: string;

  beforeAll(async () => {
    user = await newUser("mistakes");
    const res = await api("POST", "/v1/agents", { user, body: { name: "target" } });
    agentId = (await expectJson<{ agent: Agent }>(res, 201)).agent.id;
  });

  it("refuses malformed JSON, a non-JSON content type and an oversize body", async () => {
    const json = { "content-type": "application/json" };
    await expectProblem(
      await api("POST", "/v1/agents", { user, headers: json, rawBody: '{"name": "x"' }),
      400,
      "malformed_json",
    );
    await expectProblem(
      await api("POST", "/v1/agents", { user, headers: { "content-type": "text/plain" }, rawBody: "name=x" }),
      415,
      "unsupported_media_type",
    );
    const huge = JSON.stringify({ name: "big", description: "x".repeat(70 * 1024) });
    await expectProblem(
      await api("POST", "/v1/agents", { user, headers: json, rawBody: huge }),
      413,
      "payload_too_large",
    );
  });

  it("lists every bad field, and refuses fields the server owns", async () => {
    const bad = await api("POST", "/v1/agents", { user, body: { name: "", description: 5 } });
    const problem = await expectProblem(bad, 400, "validation_failed");
    expect(problem.errors?.map((e) => e.location).sort()).toEqual(["body.description", "body.name"]);

    const sneaky = await api("POST", "/v1/agents", {
      user,
      body: { name: "sneaky", id: "agt_00000000000000000000000000", userId: "someone", status: "disabled" },
    });
    const refused = await expectProblem(sneaky, 400, "validation_failed");
    expect(refused.errors?.map((e) => e.location).sort()).toEqual(["body.id", "body.status", "body.userId"]);
    const patch = await api("PATCH", `/v1/agents/${agentId}`, { user, body: { activeDeploymentId: "dep_x" } });
    await expectProblem(patch, 400, "validation_failed");
    expect(await listAgentIds(user)).toEqual([agentId]);
  });

  it("refuses bad list parameters", async () => {
    for (const limit of ["0", "-1", "1.5", "NaN", "1e9", "101"]) {
      await expectProblem(await api("GET", `/v1/agents?limit=${limit}`, { user }), 400, "validation_failed");
    }
    await expectProblem(await api("GET", "/v1/agents?cursor=not-a-cursor", { user }), 400, "invalid_cursor");
  });

  it("answers unknown ids and unknown /v1 routes with 404 problems", async () => {
    await expectProblem(await api("GET", "/v1/agents/agt_00000000000000000000000000", { user }), 404, "not_found");
    await expectProblem(await api("GET", "/v1/agents/not-an-id", { user }), 404, "not_found");
    await expectProblem(await api("GET", "/v1/no-such-thing", { user }), 404, "route_not_found");
  });
});
