import { describe, expect, it } from "vitest";
import { newUser } from "./helpers/auth";
import { setTierOf } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";

async function createAgent(headers: Record<string, string>, name = `agent-${crypto.randomUUID().slice(0, 8)}`) {
  const res = await call("POST", "/v1/agents", { headers, body: { name, description: "test agent" } });
  expect(res.status).toBe(201);
  return (await json(res)).agent;
}

describe("agents API", () => {
  it("creates, reads, lists, renames, disables and deletes an agent", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers, "support-bot");
    expect(agent).toMatchObject({
      name: "support-bot",
      description: "test agent",
      status: "active",
      activeDeploymentId: null,
    });
    expect(agent.id).toMatch(/^agt_[0-9a-z]{26}$/);
    expect(Object.keys(agent).sort()).toEqual(
      ["activeDeploymentId", "createdAt", "description", "id", "name", "status", "updatedAt"].sort(),
    );

    const read = await call("GET", `/v1/agents/${agent.id}`, { headers });
    expect(read.status).toBe(200);
    expect((await json(read)).agent.id).toBe(agent.id);

    const renamed = await call("PATCH", `/v1/agents/${agent.id}`, { headers, body: { name: "billing-bot" } });
    expect(renamed.status).toBe(200);
    expect((await json(renamed)).agent).toMatchObject({ name: "billing-bot", description: "test agent" });

    const disabled = await call("POST", `/v1/agents/${agent.id}/disable`, { headers });
    expect(disabled.status).toBe(200);
    expect((await json(disabled)).agent.status).toBe("disabled");

    const deleted = await call("DELETE", `/v1/agents/${agent.id}`, { headers });
    expect(deleted.status).toBe(204);
    await expectProblem(await call("GET", `/v1/agents/${agent.id}`, { headers }), 404, "not_found");
    const list = await json(await call("GET", "/v1/agents", { headers }));
    expect(list.agents).toEqual([]);
    await expectProblem(await call("DELETE", `/v1/agents/${agent.id}`, { headers }), 404, "not_found");
  });

  it("frees a deleted agent's name for reuse", async () => {
    const { headers } = await newUser();
    const first = await createAgent(headers, "reusable");
    await call("DELETE", `/v1/agents/${first.id}`, { headers });
    const second = await createAgent(headers, "reusable");
    expect(second.id).not.toBe(first.id);
  });

  it("returns 409 when the name is already used by the same user, but not across users", async () => {
    const a = await newUser();
    const b = await newUser();
    await createAgent(a.headers, "dup");
    const clash = await call("POST", "/v1/agents", { headers: a.headers, body: { name: "dup" } });
    await expectProblem(clash, 409, "agent_name_taken");
    await createAgent(b.headers, "dup");
    const other = await createAgent(a.headers, "other");
    await expectProblem(
      await call("PATCH", `/v1/agents/${other.id}`, { headers: a.headers, body: { name: "dup" } }),
      409,
      "agent_name_taken",
    );
  });

  it("pages through agents newest first with an opaque cursor", async () => {
    const user = await newUser();
    const { headers } = user;
    await setTierOf(user, "pro"); // five agents: more than the free tier allows
    const created = [];
    for (let i = 0; i < 5; i++) created.push(await createAgent(headers, `page-${i}`));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const qs: string = cursor ? `?limit=2&cursor=${cursor}` : "?limit=2";
      const page = await json(await call("GET", `/v1/agents${qs}`, { headers }));
      expect(page.agents.length).toBeLessThanOrEqual(2);
      seen.push(...page.agents.map((a: { id: string }) => a.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(created.map((a) => a.id).reverse());
  });
});

describe("agents API tenant isolation", () => {
  it("answers 404 to another user on every agent route and hides the agent from their list", async () => {
    const owner = await newUser("owner");
    const other = await newUser("other");
    const agent = await createAgent(owner.headers);
    const attempts: Array<[string, string, unknown?]> = [
      ["GET", `/v1/agents/${agent.id}`],
      ["PATCH", `/v1/agents/${agent.id}`, { name: "stolen" }],
      ["POST", `/v1/agents/${agent.id}/disable`],
      ["DELETE", `/v1/agents/${agent.id}`],
    ];
    for (const [method, path, body] of attempts) {
      await expectProblem(await call(method, path, { headers: other.headers, body }), 404, "not_found");
    }
    expect((await json(await call("GET", "/v1/agents", { headers: other.headers }))).agents).toEqual([]);
    const still = await json(await call("GET", `/v1/agents/${agent.id}`, { headers: owner.headers }));
    expect(still.agent).toMatchObject({ name: agent.name, status: "active" });
  });
});

describe("agents API validation", () => {
  it("lists each bad field", async () => {
    const { headers } = await newUser();
    const res = await call("POST", "/v1/agents", { headers, body: { name: "", description: 5 } });
    const problem = await expectProblem(res, 400, "validation_failed");
    const locations = problem.errors.map((e: { location: string }) => e.location).sort();
    expect(locations).toEqual(["body.description", "body.name"]);
  });

  it("enforces name and description limits", async () => {
    const { headers } = await newUser();
    await expectProblem(
      await call("POST", "/v1/agents", { headers, body: { name: "x".repeat(65) } }),
      400,
      "validation_failed",
    );
    await expectProblem(
      await call("POST", "/v1/agents", { headers, body: { name: "-starts-with-dash" } }),
      400,
      "validation_failed",
    );
    await expectProblem(
      await call("POST", "/v1/agents", { headers, body: { name: "ok", description: "d".repeat(501) } }),
      400,
      "validation_failed",
    );
    expect(
      (await call("POST", "/v1/agents", { headers, body: { name: "x".repeat(64), description: "d".repeat(500) } }))
        .status,
    ).toBe(201);
  });

  it("rejects unknown and server-owned fields and changes nothing", async () => {
    const { headers } = await newUser();
    for (const extra of [
      { id: "agt_x" },
      { userId: "usr_x" },
      { status: "disabled" },
      { activeDeploymentId: "dep_x" },
    ]) {
      const res = await call("POST", "/v1/agents", { headers, body: { name: "mass", ...extra } });
      const problem = await expectProblem(res, 400, "validation_failed");
      expect(problem.errors[0].location).toBe(`body.${Object.keys(extra)[0]}`);
    }
    const proto = await call("POST", "/v1/agents", {
      rawBody: '{"name":"proto","__proto__":{"status":"disabled"}}',
      headers: { ...headers, "content-type": "application/json" },
    });
    await expectProblem(proto, 400, "validation_failed");
    expect((await json(await call("GET", "/v1/agents", { headers }))).agents).toEqual([]);
  });

  it("answers malformed JSON, wrong content type and oversize bodies with problems", async () => {
    const { headers } = await newUser();
    const jsonHeaders = { ...headers, "content-type": "application/json" };
    await expectProblem(
      await call("POST", "/v1/agents", { headers: jsonHeaders, rawBody: "{not json" }),
      400,
      "malformed_json",
    );
    await expectProblem(
      await call("POST", "/v1/agents", { headers: { ...headers, "content-type": "text/plain" }, rawBody: "name=x" }),
      415,
      "unsupported_media_type",
    );
    const big = JSON.stringify({ name: "big", description: "x".repeat(70_000) });
    await expectProblem(
      await call("POST", "/v1/agents", { headers: jsonHeaders, rawBody: big }),
      413,
      "payload_too_large",
    );
    const chunked = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big));
        controller.close();
      },
    });
    await expectProblem(
      await call("POST", "/v1/agents", { headers: jsonHeaders, rawBody: chunked }),
      413,
      "payload_too_large",
    );
    expect((await json(await call("GET", "/v1/agents", { headers }))).agents).toEqual([]);
  });

  it("validates pagination parameters", async () => {
    const { headers } = await newUser();
    for (const limit of ["0", "101", "-1", "1.5", "NaN", "1e9", "abc"]) {
      await expectProblem(await call("GET", `/v1/agents?limit=${limit}`, { headers }), 400, "validation_failed");
    }
    expect((await call("GET", "/v1/agents?limit=100", { headers })).status).toBe(200);
    expect((await call("GET", "/v1/agents?limit=1", { headers })).status).toBe(200);
    await expectProblem(await call("GET", "/v1/agents?cursor=!!garbage!!", { headers }), 400, "invalid_cursor");
    await expectProblem(
      await call("GET", `/v1/agents?cursor=${btoa("not-an-id")}`, { headers }),
      400,
      "invalid_cursor",
    );
  });

  it("answers unknown routes with a 404 problem and every response with x-request-id", async () => {
    const res = await call("GET", "/v1/nope");
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    const health = await call("GET", "/healthz");
    expect(health.status).toBe(200);
    expect(health.headers.get("x-request-id")).toMatch(/^req_/);
    await expectProblem(await call("GET", "/nope"), 404, "route_not_found");
  });
});
