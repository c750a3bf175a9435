import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, expectPointerInvariant, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";

describe("deployments and invoke: tenant isolation", () => {
  it("answers 404 to another user on every deployment and invoke route, and changes nothing", async () => {
    const owner = await newUser("owner");
    const other = await newUser("other");
    const agent = await createAgent(owner.headers);
    const v1 = await deployAndActivate(owner.headers, agent.id);
    const v2 = await deployAndActivate(owner.headers, agent.id);
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM deployments WHERE agent_id = ?")
      .bind(agent.id)
      .first<{ n: number }>();

    const attempts: Array<[string, string, unknown?]> = [
      ["POST", `/v1/agents/${agent.id}/deploy`, {}],
      ["GET", `/v1/agents/${agent.id}/deployments`],
      ["GET", `/v1/agents/${agent.id}/deployments/${v1.id}`],
      ["POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`],
      ["POST", `/v1/invoke/${agent.id}`, userMessage("let me in")],
      ["POST", `/v1/invoke/${agent.id}/stream`, userMessage("let me in")],
    ];
    for (const [method, path, body] of attempts) {
      await expectProblem(await call(method, path, { headers: other.headers, body }), 404, "not_found");
    }

    // The other user's own agent cannot reach the owner's deployment either.
    const theirs = await createAgent(other.headers);
    await expectProblem(
      await call("GET", `/v1/agents/${theirs.id}/deployments/${v1.id}`, { headers: other.headers }),
      404,
      "not_found",
    );
    await expectProblem(
      await call("POST", `/v1/agents/${theirs.id}/deployments/${v1.id}/activate`, { headers: other.headers }),
      404,
      "not_found",
    );
    expect(await expectPointerInvariant(theirs.id)).toBeNull();

    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM deployments WHERE agent_id = ?")
      .bind(agent.id)
      .first<{ n: number }>();
    expect(after!.n).toBe(before!.n);
    expect(await expectPointerInvariant(agent.id)).toBe(v2.id);
    const list = await json(await call("GET", `/v1/agents/${agent.id}/deployments`, { headers: owner.headers }));
    expect(list.deployments.map((d: { id: string }) => d.id)).toEqual([v2.id, v1.id]);
  });

  it("refuses anonymous callers on deploy and invoke", async () => {
    const owner = await newUser();
    const agent = await createAgent(owner.headers);
    await expectProblem(await call("POST", `/v1/agents/${agent.id}/deploy`, { body: {} }), 401, "unauthenticated");
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}`, { body: userMessage("x") }),
      401,
      "unauthenticated",
    );
    await expectProblem(
      await call("POST", `/v1/invoke/${agent.id}/stream`, { body: userMessage("x") }),
      401,
      "unauthenticated",
    );
  });
});
