// What a tenant sees when a deploy or an invocation fails, and what the operator sees. Failures
// that are the agent's own (its module throws at load, a handler throws) keep their specific
// message; failures of the platform (D1, decryption, the Cloudflare API, the runtime itself) reach
// the tenant as a generic message with a reference, and their detail goes to an error log line.
// A gateway misconfiguration (a Cloudflare 401/403, a missing binding) fails a deployment on its
// first delivery instead of being retried for minutes.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import worker from "../src/index";
import { createRuntimeProvider } from "../src/runtime";
import type { RuntimeProvider } from "../src/runtime/types";
import { createDeployment } from "../src/services/deployments/create";
import { processDeployJob } from "../src/services/deployments/deploy-job";
import * as modules from "./fixtures/modules";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { faultyD1 } from "./helpers/d1-faults";
import { createAgent, userIdOf, userMessage } from "./helpers/deploy-flow";
import { seedDeployment } from "./helpers/deployments";
import { expectProblem } from "./helpers/http";
import { namespaceEnv, namespaceSetup } from "./helpers/namespace";

const db = createDb(env.DB);

/** Every console line written while a test runs. */
function captureLogs(): string[] {
  const lines: string[] = [];
  for (const method of ["log", "info", "warn", "error"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      lines.push(`${method} ${args.map(String).join(" ")}`);
    });
  }
  return lines;
}
afterEach(() => vi.restoreAllMocks());

async function newDeployment(moduleCode = modules.fixedAnswer("queued")) {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  const userId = await userIdOf(user.subject);
  const { keyring, tierLimits } = await getConfig(env);
  return createDeployment(
    { db, userId, keyring, tierLimits, artifacts: env.ARTIFACTS, queue: { send: async () => {} } },
    agent.id,
    {
      moduleCode,
    },
  );
}

async function row(id: string) {
  return (await env.DB.prepare("SELECT status, error_message FROM deployments WHERE id = ?")
    .bind(id)
    .first<{ status: string; error_message: string | null }>())!;
}

async function realRuntime(): Promise<RuntimeProvider> {
  return createRuntimeProvider({ env, ctx: createExecutionContext(), config: await getConfig(env) });
}

describe("deploy failures: what the tenant reads", () => {
  it("stores a generic message with a reference, not D1's error, when D1 fails during the deploy job", async () => {
    const lines = captureLogs();
    const d = await newDeployment();
    // The artifact read fails like a D1 outage; the claim and the failure record still work.
    const faulty = createDb(faultyD1(env.DB, (sql) => /from "deployment_artifacts"/i.test(sql)));
    const { keyring } = await getConfig(env);
    const outcome = await processDeployJob(
      { db: faulty, keyring, runtime: await realRuntime() },
      { deploymentId: d.id },
      5,
    );
    expect(outcome).toMatchObject({ action: "ack", result: "failed" });
    const { status, error_message } = await row(d.id);
    expect(status).toBe("failed");
    expect(error_message).toContain("the platform failed to deploy this agent");
    expect(error_message).toContain(d.id);
    expect(error_message).not.toMatch(/D1_ERROR|Network connection lost|select|deployment_artifacts/i);
    expect(lines.some((l) => l.startsWith("error") && l.includes("D1_ERROR") && l.includes(d.id))).toBe(true);
  });

  it("stores a generic message when the deployment's secrets cannot be decrypted (wrong key)", async () => {
    const lines = captureLogs();
    const d = await newDeployment();
    const wrongKey = await getConfig({ ...env, SECRETS_ENCRYPTION_KEY: btoa("x".repeat(32)) });
    await processDeployJob(
      { db, artifacts: env.ARTIFACTS, keyring: wrongKey.keyring, runtime: await realRuntime() },
      { deploymentId: d.id },
      1,
    );
    const { status, error_message } = await row(d.id);
    expect(status).toBe("failed");
    expect(error_message).toContain("the platform failed to deploy this agent");
    expect(error_message).not.toMatch(/decrypt|SECRETS_ENCRYPTION_KEY/i);
    expect(lines.some((l) => l.startsWith("error") && /SECRETS_ENCRYPTION_KEY/.test(l) && l.includes(d.id))).toBe(true);
  });

  it("fails at once, as a misconfiguration, when Cloudflare refuses the operator's token (403)", async () => {
    const lines = captureLogs();
    const d = await newDeployment();
    const { api, runtime } = namespaceSetup();
    api.inject({
      method: "PUT",
      times: 5,
      status: 403,
      errors: [{ code: 10000, message: "Authentication error: token lacks Workers Scripts:Edit" }],
    });
    const { keyring } = await getConfig(env);
    const outcome = await processDeployJob(
      { db, artifacts: env.ARTIFACTS, keyring, runtime },
      { deploymentId: d.id },
      1,
    );
    expect(outcome).toMatchObject({ action: "ack", result: "failed" });
    const { status, error_message } = await row(d.id);
    expect(status).toBe("failed");
    expect(error_message).toMatch(/^the platform is misconfigured/);
    expect(error_message).toContain(d.id);
    expect(error_message).not.toMatch(/Cloudflare|403|10000|token/i);
    const logged = lines.filter((l) => l.startsWith("error") && l.includes(d.id));
    expect(logged.some((l) => l.includes("misconfigured") && l.includes("HTTP 403") && l.includes("code 10000"))).toBe(
      true,
    );
  });

  it("fails at once when the gateway's own bindings are missing (DISPATCH_MODE=loader without LOADER)", async () => {
    const lines = captureLogs();
    const d = await newDeployment();
    const batch = createMessageBatch("deploy-jobs", [
      { id: `m-${d.id}`, timestamp: new Date(), attempts: 1, body: { deploymentId: d.id } },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, LOADER: undefined } as unknown as typeof env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual([`m-${d.id}`]);
    const { status, error_message } = await row(d.id);
    expect(status).toBe("failed");
    expect(error_message).toMatch(/^the platform is misconfigured/);
    expect(error_message).not.toContain("LOADER");
    expect(lines.some((l) => l.startsWith("error") && l.includes("LOADER"))).toBe(true);
  });

  it("keeps the agent's own message when its module throws at load time", async () => {
    const d = await newDeployment(modules.THROWS_AT_LOAD);
    const { keyring } = await getConfig(env);
    await processDeployJob(
      { db, artifacts: env.ARTIFACTS, keyring, runtime: await realRuntime() },
      { deploymentId: d.id },
      1,
    );
    const { status, error_message } = await row(d.id);
    expect(status).toBe("failed");
    expect(error_message).toContain("kaboom at load time");
    expect(error_message).not.toContain("the platform");
  });

  it("keeps Cloudflare's validation message (10021), which is about the agent's script", async () => {
    const d = await newDeployment();
    const { api, runtime } = namespaceSetup();
    api.inject({ method: "PUT", status: 400, errors: [{ code: 10021, message: "Uncaught SyntaxError: bad token" }] });
    const { keyring } = await getConfig(env);
    await processDeployJob({ db, artifacts: env.ARTIFACTS, keyring, runtime }, { deploymentId: d.id }, 1);
    expect((await row(d.id)).error_message).toContain("Uncaught SyntaxError: bad token");
  });
});

describe("invoke failures: what the tenant reads", () => {
  it("answers a platform failure of the runtime with a 502 whose detail hides the internal text", async () => {
    const lines = captureLogs();
    const dep = await seedDeployment();
    const internal = "internal error; reference = 7hf2kq9 (D1 binding DB: SQLITE_IOERR)";
    const dispatcher = {
      get: () => ({ fetch: () => Promise.reject(new Error(internal)) }),
    };
    const res = await callWithEnv(
      { DISPATCH_MODE: "namespace", DISPATCHER: dispatcher, ...namespaceEnv() },
      "POST",
      `/v1/invoke/${dep.agentId}`,
      { headers: dep.owner.headers, body: userMessage("hello") },
    );
    expect(res.status).toBe(502);
    const problem = (await res.json()) as { detail: string; code: string; requestId?: string };
    expect(problem.detail).not.toMatch(/7hf2kq9|SQLITE|D1/);
    expect(problem.detail).toMatch(/quote ref req_/);
    expect(lines.some((l) => l.startsWith("error") && l.includes("7hf2kq9"))).toBe(true);
  });

  it("answers a decryption failure on a cold start (wrong key) with a 502 that does not mention it", async () => {
    captureLogs();
    const dep = await seedDeployment();
    const res = await callWithEnv(
      { SECRETS_ENCRYPTION_KEY: btoa("y".repeat(32)) },
      "POST",
      `/v1/invoke/${dep.agentId}`,
      {
        headers: dep.owner.headers,
        body: userMessage("hello"),
      },
    );
    const problem = await expectProblem(res, 502, "upstream_error");
    expect(problem.detail).not.toMatch(/decrypt|key/i);
  });

  it("keeps the agent's own exception text", async () => {
    const dep = await seedDeployment();
    const dispatcher = {
      get: () => ({ fetch: () => Promise.reject(new TypeError("Cannot read properties of undefined (reading 'q')")) }),
    };
    const res = await callWithEnv(
      { DISPATCH_MODE: "namespace", DISPATCHER: dispatcher, ...namespaceEnv() },
      "POST",
      `/v1/invoke/${dep.agentId}`,
      { headers: dep.owner.headers, body: userMessage("hello") },
    );
    const problem = await expectProblem(res, 502, "upstream_exception");
    expect(problem.detail).toContain("reading 'q'");
  });
});
