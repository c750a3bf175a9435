// Multi-module bundles: what deploy accepts (names, types, encodings, flags), the per-tier size
// limit (413 before anything is stored), content-addressed storage in ARTIFACTS (R2), and a real
// bundle of every module type deployed and invoked through the Worker Loader.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import { createRuntimeProvider } from "../src/runtime";
import { createDeployment } from "../src/services/deployments/create";
import { processDeployJob } from "../src/services/deployments/deploy-job";
import { DEFAULT_TIER_LIMITS } from "../src/services/usage/tiers";
import { BUNDLE_ANSWER, multiModuleBundle, toBase64 } from "./fixtures/bundle";
import { newUser } from "./helpers/auth";
import {
  createAgent,
  deploy,
  expectPointerInvariant,
  userIdOf,
  userMessage,
  waitUntilSettled,
} from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";

async function objectKeys(): Promise<string[]> {
  const listed = await env.ARTIFACTS.list({ prefix: "bundles/" });
  return listed.objects.map((o) => o.key);
}

describe("bundles: a multi-module agent in loader mode", () => {
  it("deploys an ES main importing ES, CJS, JSON, text, data and wasm modules, and it answers", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const d = await deploy(headers, agent.id, { ...multiModuleBundle(), compatibilityFlags: ["nodejs_compat"] });
    const settled = await waitUntilSettled(headers, agent.id, d.id);
    expect(settled).toMatchObject({ status: "active", errorMessage: null, mainModuleName: "src/index.js" });
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("bob") });
    expect(res.status).toBe(200);
    expect((await json(res)).output.text).toBe(BUNDLE_ANSWER);
  });

  it("runs with nodejs_compat when asked for it", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const moduleCode = `import { Buffer } from "node:buffer";
export default { async fetch() { return Response.json({ output: { text: Buffer.from("hi").toString("hex") } }); } };`;
    const d = await deploy(headers, agent.id, { moduleCode, compatibilityFlags: ["nodejs_compat"] });
    expect((await waitUntilSettled(headers, agent.id, d.id)).status).toBe("active");
    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("x") });
    expect((await json(res)).output.text).toBe("6869");
  });

  it("fails a bundle that imports a package it does not contain, saying to bundle dependencies", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const d = await deploy(headers, agent.id, {
      mainModuleName: "index.js",
      modules: [
        { name: "index.js", type: "esm", content: `import { ask } from "./lib/x.js"; export default { fetch: ask };` },
        {
          name: "lib/x.js",
          type: "esm",
          content: `import OpenAI from "openai"; export const ask = () => new OpenAI();`,
        },
      ],
    });
    const settled = await waitUntilSettled(headers, agent.id, d.id);
    expect(settled.status).toBe("failed");
    expect(settled.errorMessage).toMatch(/openai/);
    expect(settled.errorMessage).toMatch(/bundle your dependencies/);
  });
});

describe("bundles: what deploy refuses", () => {
  const base = () => multiModuleBundle();
  const cases: Array<[string, (b: ReturnType<typeof base>) => Record<string, unknown>, RegExp, string]> = [
    [
      "a name with ..",
      (b) => ({ ...b, modules: [...b.modules, { name: "../escape.js", type: "esm", content: "" }] }),
      /"\.\.\/escape\.js" must not contain '\.\.' segments/,
      "body.modules[7].name",
    ],
    [
      "a name with a leading /",
      (b) => ({ ...b, modules: [...b.modules, { name: "/abs.js", type: "esm", content: "" }] }),
      /"\/abs\.js" must be a relative path/,
      "body.modules[7].name",
    ],
    [
      "a duplicate name",
      (b) => ({ ...b, modules: [...b.modules, { name: "src/prompt.txt", type: "text", content: "x" }] }),
      /"src\/prompt\.txt" appears twice/,
      "body.modules[7].name",
    ],
    [
      "wasm without base64",
      (b) => ({ ...b, modules: [...b.modules, { name: "x.wasm", type: "wasm", content: "abc" }] }),
      /"x\.wasm" is wasm: send its bytes with encoding "base64"/,
      "body.modules[7].encoding",
    ],
    [
      "a main module that is not esm",
      (b) => ({ ...b, mainModuleName: "src/lib/counter.cjs" }),
      /must be an ES module \(type "esm"\), not cjs/,
      "body.mainModuleName",
    ],
    [
      "a main module that is not in the bundle",
      (b) => ({ ...b, mainModuleName: "nope.js" }),
      /"nope\.js" names no module of the bundle/,
      "body.mainModuleName",
    ],
    [
      "a compatibility flag off the allow-list",
      (b) => ({ ...b, compatibilityFlags: ["unsafe_eval_everything"] }),
      /"unsafe_eval_everything" is not allowed; allowed flags: nodejs_compat/,
      "body.compatibilityFlags[0]",
    ],
    [
      "invalid JSON in a json module",
      (b) => ({ ...b, modules: [...b.modules, { name: "bad.json", type: "json", content: "{nope" }] }),
      /"bad\.json" is json but its content is not valid JSON/,
      "body.modules[7].content",
    ],
  ];
  for (const [label, body, detail, location] of cases) {
    it(`400 for ${label}, naming the module and the rule; nothing is stored`, async () => {
      const { headers } = await newUser();
      const agent = await createAgent(headers);
      const before = await objectKeys();
      const problem = await expectProblem(
        await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: body(base()) }),
        400,
        "validation_failed",
      );
      expect(problem.detail).toMatch(detail);
      expect(problem.errors.map((e: { location: string }) => e.location)).toEqual([location]);
      expect(await objectKeys()).toEqual(before);
    });
  }

  it("413 naming bundleBytes for a bundle over the plan's decoded size, before anything is stored", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const limit = DEFAULT_TIER_LIMITS.free.bundleBytes;
    const before = await objectKeys();
    const b = multiModuleBundle();
    // base64 makes it ~4 MiB on the wire: under the route's body limit, over the decoded limit.
    const big = { name: "big.bin", type: "data", content: toBase64(new Uint8Array(limit)), encoding: "base64" };
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: { ...b, modules: [...b.modules, big] } }),
      413,
      "payload_too_large",
    );
    expect(problem).toMatchObject({ limit: "bundleBytes", tier: "free", limitBytes: limit });
    expect(problem.detail).toContain("bundleBytes");
    expect(await objectKeys()).toEqual(before);
    const list = await json(await call("GET", `/v1/agents/${agent.id}/deployments`, { headers }));
    expect(list.deployments).toEqual([]);
  });

  it("413 naming bundleModules for too many modules", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const modules = Array.from({ length: 201 }, (_, i) => ({ name: `m${i}.js`, type: "esm", content: "" }));
    const problem = await expectProblem(
      await call("POST", `/v1/agents/${agent.id}/deploy`, { headers, body: { mainModuleName: "m0.js", modules } }),
      413,
      "payload_too_large",
    );
    expect(problem).toMatchObject({ limit: "bundleModules", max: 200 });
  });
});

describe("bundles: stored once in ARTIFACTS (R2), content-addressed", () => {
  it("the same bundle deployed twice is one object and one artifact row", async () => {
    const { headers, subject } = await newUser();
    const agent = await createAgent(headers);
    const b = { ...multiModuleBundle(), compatibilityFlags: ["nodejs_compat"] };
    const first = await deploy(headers, agent.id, b);
    const second = await deploy(headers, agent.id, b);
    expect(second.moduleSha256).toBe(first.moduleSha256);
    const key = `bundles/${first.moduleSha256}.json`;
    expect((await env.ARTIFACTS.list({ prefix: key })).objects.map((o) => o.key)).toEqual([key]);
    const rows = await env.DB.prepare(
      "SELECT storage, object_key, module_count FROM deployment_artifacts WHERE sha256 = ? AND user_id = ?",
    )
      .bind(first.moduleSha256, await userIdOf(subject))
      .all();
    expect(rows.results).toEqual([{ storage: "r2", object_key: key, module_count: 7 }]);
    await waitUntilSettled(headers, agent.id, first.id);
    await waitUntilSettled(headers, agent.id, second.id);
  });

  it("an object missing from R2 ends the deployment failed with a clear message (not stuck), the previous one serving", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const userId = await userIdOf(user.subject);
    const config = await getConfig(env);
    const db = createDb(env.DB);
    const runtime = createRuntimeProvider({ env, ctx: createExecutionContext(), config });
    const deps = { db, userId, keyring: config.keyring, tierLimits: config.tierLimits, artifacts: env.ARTIFACTS };
    const make = (text: string) =>
      createDeployment({ ...deps, queue: { send: async () => {} } }, agent.id, {
        moduleCode: `export default { fetch() { return Response.json({ output: { text: ${JSON.stringify(text)} } }); } };`,
      });
    const good = await make(`good ${crypto.randomUUID()}`);
    expect(await processDeployJob({ ...deps, runtime }, { deploymentId: good.id }, 1)).toMatchObject({
      result: "active",
    });
    const orphan = await make(`orphan ${crypto.randomUUID()}`);
    const artifact = await env.DB.prepare(
      "SELECT a.object_key AS k FROM deployment_artifacts a JOIN deployments d ON d.artifact_id = a.id WHERE d.id = ?",
    )
      .bind(orphan.id)
      .first<{ k: string }>();
    await env.ARTIFACTS.delete(artifact!.k);
    expect(await processDeployJob({ ...deps, runtime }, { deploymentId: orphan.id }, 1)).toEqual({
      action: "ack",
      result: "failed",
    });
    const row = await env.DB.prepare("SELECT status, error_message FROM deployments WHERE id = ?")
      .bind(orphan.id)
      .first<{ status: string; error_message: string }>();
    expect(row?.status).toBe("failed");
    expect(row?.error_message).toMatch(/missing from the artifact store; deploy the code again/);
    expect(await expectPointerInvariant(agent.id)).toBe(good.id);
  });

  it("a deployment whose code is in D1 (made before bundles) still deploys and answers", async () => {
    const { seedDeployment } = await import("./helpers/deployments");
    const seeded = await seedDeployment();
    const res = await call("POST", `/v1/invoke/${seeded.agentId}`, {
      headers: seeded.owner.headers,
      body: userMessage("x"),
    });
    // The seeded module answers its deployment id as plain text: the gateway read it from D1 and ran it.
    expect(res.headers.get("x-deployment-id")).toBe(seeded.deploymentId);
    expect(res.status).toBe(502);
    expect((await json(res)).code).toBe("upstream_invalid_response");
  });
});
