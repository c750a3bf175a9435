import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../src/crypto/encoding";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import { ApiError } from "../src/lib/errors";
import { createDeployment } from "../src/services/deployments/create";
import { DEFAULT_TIER_LIMITS } from "../src/services/usage/tiers";

const MODULE_CODE_MAX_BYTES = DEFAULT_TIER_LIMITS.free.bundleBytes;

import * as modules from "./fixtures/modules";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import {
  createAgent,
  deploy,
  deployAndActivate,
  expectPointerInvariant,
  getDeployment,
  userIdOf,
  userMessage,
  waitUntilSettled,
} from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";

const DEPLOYMENT_FIELDS = [
  "activatedAt",
  "activation",
  "agentId",
  "compatibilityDate",
  "createdAt",
  "errorMessage",
  "id",
  "invokePath",
  "mainModuleName",
  "moduleSha256",
  "runtimeProvider",
  "status",
  "updatedAt",
];

async function answerOf(headers: Record<string, string>, agentId: string) {
  const res = await call("POST", `/v1/invoke/${agentId}`, { headers, body: userMessage("which version?") });
  expect(res.status).toBe(200);
  return { text: (await json(res)).output.text as string, deploymentId: res.headers.get("x-deployment-id") };
}

describe("deploy: the request", () => {
  it("answers 202 with the deployment (deploying), its fields and defaults, and nothing secret", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const res = await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: {} });
    expect(res.status).toBe(202);
    const text = await res.text();
    expect(res.headers.get("location")).toBe(`/v1/agents/${agent.id}/deployments/${JSON.parse(text).deployment.id}`);
    expect(text).not.toMatch(/ciphertext|secret|v1\.[0-9a-f]{12}\./i);
    const { deployment } = JSON.parse(text);
    expect(Object.keys(deployment).sort()).toEqual(DEPLOYMENT_FIELDS);
    expect(deployment).toMatchObject({
      agentId: agent.id,
      status: "deploying",
      activation: "auto",
      runtimeProvider: "cloudflare",
      compatibilityDate: "2026-08-01",
      invokePath: "/invoke",
      mainModuleName: "index.mjs",
      activatedAt: null,
      errorMessage: null,
    });
    expect(deployment.id).toMatch(/^dep_[0-9a-z]{26}$/);
    await waitUntilSettled(headers, agent.id, deployment.id);
  });

  it("deploys the template when the request has no body at all", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const res = await call("POST", `/v1/agents/${agent.id}/deploy`, { headers });
    expect(res.status).toBe(202);
    const { deployment } = await json(res);
    expect((await waitUntilSettled(headers, agent.id, deployment.id)).status).toBe("active");
    expect((await answerOf(headers, agent.id)).text).toBe("which version?");
  });

  it("refuses an unknown runtimeProvider naming the allowed values, and agentcore naming the configuration it lacks", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: { runtimeProvider: "lambda" } }),
      400,
      "unsupported_runtime_provider",
    );
    expect(problem.detail).toContain("allowed values: cloudflare, agentcore");
    expect(problem.errors).toEqual([
      { location: "body.runtimeProvider", message: "must be one of: cloudflare, agentcore" },
    ]);
    // The test worker has no AgentCore configuration: the provider exists but is not offered here.
    const unconfigured = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: { runtimeProvider: "agentcore" } }),
      400,
      "unsupported_runtime_provider",
    );
    expect(unconfigured.detail).toContain("missing: AGENTCORE_REGION, AGENTCORE_ROLE_ARN, AGENTCORE_ARTIFACT_BUCKET");
    expect(unconfigured.allowed).toEqual(["cloudflare"]);
    const listed = await call("GET", `/v1/agents/${agent.id}/deployments`, { headers });
    expect((await json(listed)).deployments).toEqual([]);
    const ok = await deploy(headers, agent.id, { runtimeProvider: "cloudflare" });
    expect(ok.runtimeProvider).toBe("cloudflare");
    await waitUntilSettled(headers, agent.id, ok.id);
  });

  it("validates compatibilityDate, invokePath, mainModuleName and unknown fields", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ compatibilityDate: "2026-13-01" }, "body.compatibilityDate"],
      [{ compatibilityDate: "2026-02-30" }, "body.compatibilityDate"],
      [{ compatibilityDate: "yesterday" }, "body.compatibilityDate"],
      [{ compatibilityDate: "2999-01-01" }, "body.compatibilityDate"],
      [{ invokePath: "invoke" }, "body.invokePath"],
      [{ invokePath: "/a?b=1" }, "body.invokePath"],
      [{ invokePath: `/${"x".repeat(200)}` }, "body.invokePath"],
      [{ mainModuleName: "/index.js" }, "body.mainModuleName"],
      [{ mainModuleName: "../evil.js" }, "body.mainModuleName"],
      [{ moduleCode: "" }, "body.moduleCode"],
      [{ moduleCode: 42 }, "body.moduleCode"],
      [{ status: "active" }, "body.status"],
      [{ telemetrySecret: "mine" }, "body.telemetrySecret"],
    ];
    for (const [body, location] of cases) {
      const problem = await expectProblem(
        await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body }),
        400,
        "validation_failed",
      );
      expect(problem.errors.map((e: { location: string }) => e.location)).toEqual([location]);
    }
    const list = await json(await call("GET", `/v1/agents/${agent.id}/deployments`, { headers }));
    expect(list.deployments).toEqual([]);
  });

  it("answers 413 for a module over the size limit, and for a body over the route's limit", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const tooBig = `//${"x".repeat(MODULE_CODE_MAX_BYTES - 1)}`;
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: { moduleCode: tooBig } }),
      413,
      "payload_too_large",
    );
    expect(problem.limitBytes).toBe(MODULE_CODE_MAX_BYTES);
    await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, {
        headers,
        body: { moduleCode: "x".repeat(3 * MODULE_CODE_MAX_BYTES) },
      }),
      413,
      "payload_too_large",
    );
    const list = await json(await call("GET", `/v1/agents/${agent.id}/deployments`, { headers }));
    expect(list.deployments).toEqual([]);
  });

  it("refuses to deploy a disabled agent (409) or a deleted one (404)", async () => {
    const { headers } = await newUser();
    const disabled = await createAgent(headers);
    await call("POST", `/v1/agents/${disabled.id}/disable`, { headers });
    await expectProblem(
      await call("POST", `/v1/agents/${disabled.id}/deploy`, { headers, body: {} }),
      409,
      "agent_disabled",
    );
    const deleted = await createAgent(headers);
    await call("DELETE", `/v1/agents/${deleted.id}`, { headers });
    await expectProblem(await call("POST", `/v1/agents/${deleted.id}/deploy`, { headers, body: {} }), 404, "not_found");
  });

  it("stores the code once per user (one artifact row each) and once in R2, with the module's sha256", async () => {
    const a = await newUser();
    const b = await newUser();
    const code = modules.fixedAnswer(`content addressed ${crypto.randomUUID()}`);
    const agentA = await createAgent(a.headers);
    const first = await deploy(a.headers, agentA.id, { moduleCode: code });
    const second = await deploy(a.headers, agentA.id, { moduleCode: code });
    const agentB = await createAgent(b.headers);
    const third = await deploy(b.headers, agentB.id, { moduleCode: code });
    const sha = await sha256Hex(code);
    expect([first.moduleSha256, second.moduleSha256, third.moduleSha256]).toEqual([sha, sha, sha]);
    const rows = await env.DB.prepare(
      `SELECT DISTINCT a.user_id, a.size_bytes, a.storage, a.object_key FROM deployment_artifacts a
         JOIN deployments d ON d.artifact_id = a.id WHERE d.id IN (?, ?, ?)`,
    )
      .bind(first.id, second.id, third.id)
      .all<{ user_id: string; size_bytes: number; storage: string; object_key: string }>();
    expect(rows.results.map((r) => r.user_id).sort()).toEqual(
      [await userIdOf(a.subject), await userIdOf(b.subject)].sort(),
    );
    const keys = new Set(rows.results.map((r) => r.object_key));
    expect(keys.size).toBe(1);
    expect(rows.results.every((r) => r.storage === "r2" && r.size_bytes === code.length)).toBe(true);
    const stored = await env.ARTIFACTS.get([...keys][0]!);
    expect(JSON.parse(await stored!.text()).modules).toEqual([
      { name: "index.mjs", type: "esm", encoding: "utf8", content: code },
    ]);
    const artifactIds = await env.DB.prepare("SELECT DISTINCT artifact_id FROM deployments WHERE id IN (?, ?)")
      .bind(first.id, second.id)
      .all();
    expect(artifactIds.results).toHaveLength(1);
    for (const [h, agentId, d] of [
      [a.headers, agentA.id, first],
      [a.headers, agentA.id, second],
      [b.headers, agentB.id, third],
    ] as const) {
      await waitUntilSettled(h, agentId, d.id);
    }
  });

  it("gives the script a snapshot of the agent's secrets (set through the secrets API) taken at deploy time", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const setSecret = async (value: string) => {
      const res = await call("PUT", `/v1/agents/${agent.id}/secrets/API_KEY`, { headers, body: { value } });
      expect([200, 201]).toContain(res.status);
    };
    await setSecret("first-value");
    const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.ENV_REPORTER });
    const seen1 = JSON.parse((await answerOf(headers, agent.id)).text);
    expect(seen1.API_KEY).toBe("first-value");
    expect(seen1.envKeys).toContain("API_KEY");
    const stored = await env.DB.prepare("SELECT secrets_snapshot_ciphertext AS c FROM deployments WHERE id = ?")
      .bind(v1.id)
      .first<{ c: string }>();
    expect(stored!.c).toMatch(/^v1\./);
    expect(stored!.c).not.toContain("first-value");

    // A changed secret reaches the next deployment only; rolling back brings the old value back.
    await setSecret("second-value");
    expect(JSON.parse((await answerOf(headers, agent.id)).text).API_KEY).toBe("first-value");
    await deployAndActivate(headers, agent.id, { moduleCode: modules.ENV_REPORTER });
    expect(JSON.parse((await answerOf(headers, agent.id)).text).API_KEY).toBe("second-value");
    expect((await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, { headers })).status).toBe(200);
    expect(JSON.parse((await answerOf(headers, agent.id)).text).API_KEY).toBe("first-value");
  });

  it("answers 403 plan_limit_exceeded once the tier's deploys for the day are used up", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const limited = { TIER_LIMITS: JSON.stringify({ free: { deploysPerDay: 2 } }) };
    const deployWithLimit = () => callWithEnv(limited, "POST", `/v1/agents/${agent.id}/deploy`, { headers, body: {} });
    expect((await deployWithLimit()).status).toBe(202);
    expect((await deployWithLimit()).status).toBe(202);
    const problem = await expectProblem(await deployWithLimit(), 403, "plan_limit_exceeded");
    expect(problem).toMatchObject({ limit: "deploysPerDay", tier: "free", max: 2, current: 2 });
    const list = await json(await call("GET", `/v1/agents/${agent.id}/deployments`, { headers }));
    expect(list.deployments).toHaveLength(2);
    for (const d of list.deployments) await waitUntilSettled(headers, agent.id, d.id);
  });

  it("marks the deployment failed (and answers 503) when the deploy job cannot be queued", async () => {
    const { headers, subject } = await newUser();
    const agent = await createAgent(headers);
    const { keyring, tierLimits } = await getConfig(env);
    const brokenQueue = {
      send: async () => {
        throw new Error("queue unavailable");
      },
    };
    const attempt = createDeployment(
      {
        db: createDb(env.DB),
        userId: await userIdOf(subject),
        keyring,
        tierLimits,
        artifacts: env.ARTIFACTS,
        queue: brokenQueue,
      },
      agent.id,
      {},
    );
    await expect(attempt).rejects.toBeInstanceOf(ApiError);
    await expect(attempt).rejects.toMatchObject({ code: "service_unavailable" });
    const [row] = (await json(await call("GET", `/v1/agents/${agent.id}/deployments`, { headers }))).deployments;
    expect(row).toMatchObject({ status: "failed", errorMessage: "the deploy job could not be queued; deploy again" });
  });
});

describe("deploy: modules that cannot run", () => {
  it("fails a module that throws at load time, with the error, and keeps the previous deployment serving", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const good = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("still here") });
    const broken = await deploy(headers, agent.id, { moduleCode: modules.THROWS_AT_LOAD });
    const settled = await waitUntilSettled(headers, agent.id, broken.id);
    expect(settled.status).toBe("failed");
    expect(settled.errorMessage).toContain("kaboom at load time");
    expect(settled.activatedAt).toBeNull();
    expect(await expectPointerInvariant(agent.id)).toBe(good.id);
    expect(await answerOf(headers, agent.id)).toEqual({ text: "still here", deploymentId: good.id });
  });

  it("fails a module with a syntax error or without a fetch handler", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    for (const [code, expected] of [
      [modules.SYNTAX_ERROR, /SyntaxError/],
      [modules.NO_FETCH_HANDLER, /the default export has no fetch handler/],
    ] as const) {
      const d = await deploy(headers, agent.id, { moduleCode: code });
      const settled = await waitUntilSettled(headers, agent.id, d.id);
      expect(settled.status).toBe("failed");
      expect(settled.errorMessage).toMatch(expected);
    }
    expect(await expectPointerInvariant(agent.id)).toBeNull();
  });
});

describe("deploy: the deploy check runs no request", () => {
  it("deploys an agent that reads request.json() on every request, and it answers", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const d = await deploy(headers, agent.id, { moduleCode: modules.READS_JSON_ALWAYS });
    const settled = await waitUntilSettled(headers, agent.id, d.id);
    expect(settled).toMatchObject({ status: "active", errorMessage: null });
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("hi") });
    expect(res.status).toBe(200);
    expect((await json(res)).output.text).toBe("you said hi");
  });

  it("fails a bundle whose top-level code never finishes, and says where to move the work", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const d = await deploy(headers, agent.id, {
      moduleCode: `await new Promise(() => {});\nexport default { fetch() { return new Response("never"); } };`,
    });
    const settled = await waitUntilSettled(headers, agent.id, d.id);
    expect(settled.status).toBe("failed");
    expect(settled.errorMessage).toBe(
      "the bundle's top-level code never finished (a top-level await that never settles): move waiting work into the fetch handler",
    );
  });

  it("deploys a handler that always throws; invoking it is 502 upstream_exception", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const d = await deploy(headers, agent.id, { moduleCode: modules.ALWAYS_THROWS });
    const settled = await waitUntilSettled(headers, agent.id, d.id);
    expect(settled).toMatchObject({ status: "active", errorMessage: null });
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("x") });
    const problem = await expectProblem(res, 502, "upstream_exception");
    expect(problem.detail).toContain("always broken");
  });
});

describe("deployments: list and read", () => {
  it("lists newest first with limit, status and includeInactive", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
    const v2 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v2") });
    const bad = await deploy(headers, agent.id, { moduleCode: modules.THROWS_AT_LOAD });
    await waitUntilSettled(headers, agent.id, bad.id);
    const v3 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v3") });

    const list = async (qs = "") =>
      (await json(await call("GET", `/v1/agents/${agent.id}/deployments${qs}`, { headers }))).deployments.map(
        (d: { id: string; status: string }) => `${d.id}:${d.status}`,
      );
    expect(await list()).toEqual([`${v3.id}:active`, `${bad.id}:failed`, `${v2.id}:inactive`, `${v1.id}:inactive`]);
    expect(await list("?limit=2")).toEqual([`${v3.id}:active`, `${bad.id}:failed`]);
    expect(await list("?status=inactive")).toEqual([`${v2.id}:inactive`, `${v1.id}:inactive`]);
    expect(await list("?status=failed")).toEqual([`${bad.id}:failed`]);
    expect(await list("?includeInactive=false")).toEqual([`${v3.id}:active`, `${bad.id}:failed`]);
    expect(await list("?includeInactive=true&limit=200")).toHaveLength(4);
  });

  it("validates the list parameters", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    for (const qs of ["limit=0", "limit=201", "limit=abc", "status=running", "includeInactive=yes"]) {
      await expectProblem(
        await call("GET", `/v1/agents/${agent.id}/deployments?${qs}`, { headers }),
        400,
        "validation_failed",
      );
    }
  });

  it("reads one deployment, and answers 404 for an unknown id or one of the user's other agents", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const other = await createAgent(headers);
    const d = await deployAndActivate(headers, agent.id);
    expect((await getDeployment(headers, agent.id, d.id)).status).toBe("active");
    await expectProblem(await call("GET", `/v1/agents/${other.id}/deployments/${d.id}`, { headers }), 404, "not_found");
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/deployments/dep_00000000000000000000000000`, { headers }),
      404,
      "not_found",
    );
    await expectProblem(
      await call("GET", `/v1/agents/${agent.id}/deployments/nonsense`, { headers }),
      404,
      "not_found",
    );
  });
});

describe("deployments: rollback", () => {
  it("activates an earlier deployment, moving the pointer in one step, and invocations follow it", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
    const v2 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v2") });
    expect(await expectPointerInvariant(agent.id)).toBe(v2.id);
    expect((await getDeployment(headers, agent.id, v1.id)).status).toBe("inactive");
    expect(await answerOf(headers, agent.id)).toEqual({ text: "v2", deploymentId: v2.id });

    const res = await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, { headers });
    expect(res.status).toBe(200);
    const { deployment } = await json(res);
    expect(deployment).toMatchObject({ id: v1.id, status: "active" });
    expect(deployment.activatedAt).toBeGreaterThanOrEqual(v2.activatedAt!);
    expect(await expectPointerInvariant(agent.id)).toBe(v1.id);
    expect((await getDeployment(headers, agent.id, v2.id)).status).toBe("inactive");
    expect(await answerOf(headers, agent.id)).toEqual({ text: "v1", deploymentId: v1.id });
    const agentNow = await json(await call("GET", `/v1/agents/${agent.id}`, { headers }));
    expect(agentNow.agent.activeDeploymentId).toBe(v1.id);

    // Activating the active deployment again changes nothing; rolling forward works too.
    const again = await json(await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, { headers }));
    expect(again.deployment).toEqual(deployment);
    expect((await call("POST", `/v1/agents/${agent.id}/deployments/${v2.id}/activate`, { headers })).status).toBe(200);
    expect(await expectPointerInvariant(agent.id)).toBe(v2.id);
    expect((await answerOf(headers, agent.id)).text).toBe("v2");
  });

  it("answers 409 for a deployment whose code retention removed", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const v1 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v1") });
    const v2 = await deployAndActivate(headers, agent.id, { moduleCode: modules.fixedAnswer("v2") });
    await env.DB.prepare("UPDATE deployments SET script_removed_at = ? WHERE id = ?").bind(Date.now(), v1.id).run();
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, { headers }),
      409,
      "deployment_not_activatable",
    );
    expect(problem.detail).toContain("removed");
    expect(await expectPointerInvariant(agent.id)).toBe(v2.id);
  });

  it("answers 409 for a deployment that never became active, and for a disabled agent", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const good = await deployAndActivate(headers, agent.id);
    const bad = await deploy(headers, agent.id, { moduleCode: modules.THROWS_AT_LOAD });
    await waitUntilSettled(headers, agent.id, bad.id);
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deployments/${bad.id}/activate`, { headers }),
      409,
      "deployment_not_activatable",
    );
    expect(problem.detail).toContain("failed");
    expect(await expectPointerInvariant(agent.id)).toBe(good.id);
    await call("POST", `/v1/agents/${agent.id}/disable`, { headers });
    await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deployments/${good.id}/activate`, { headers }),
      409,
      "agent_disabled",
    );
  });
});

describe("empty bodies labelled JSON", () => {
  it("deploys the template when the body is empty but Content-Type says JSON, and lists missing fields elsewhere", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const jsonNoBody = { ...user.headers, "content-type": "application/json", "content-length": "0" };
    const res = await call("POST", `/v1/agents/${agent.id}/deploy`, { headers: jsonNoBody });
    expect(res.status).toBe(202);
    expect((await json(res)).deployment.status).toBe("deploying");
    const create = await call("POST", "/v1/agents", { headers: jsonNoBody });
    const problem = await expectProblem(create, 400, "validation_failed");
    expect(problem.errors.map((e: { location: string }) => e.location)).toEqual(["body.name"]);
  });
});
