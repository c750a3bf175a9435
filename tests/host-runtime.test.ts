// The gateway with DISPATCH_MODE=host against the agent host Worker (vitest.config.ts bundles
// src/agent-host/ as an auxiliary worker: a real RPC service binding, one process). What the
// process boundary, the watchdog and a stuck host do is tests/e2e/agent-host.e2e.test.ts's part.
// - an invocation cold-starts the deployment in the host: the host calls the gateway's
//   loadBundle back (artifact from R2, secrets decrypted), and the answer comes back;
// - the built-in template's signed telemetry event, sent through the host's TELEMETRY door,
//   lands in metrics_events for its own deployment (the bridge carried the identity);
// - a report for another deployment through that door is refused for its identity;
// - when the host is not reachable (its process is down or restarting), the caller gets
//   503 upstream_unavailable with Retry-After, not a 500 or a hang.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { metricsEvents } from "../src/db/schema";
import { HostBridge } from "../src/entrypoints/host-bridge";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { expectProblem } from "./helpers/http";
import { waitFor } from "./helpers/wait";

const HOST = { DISPATCH_MODE: "host" };

const WRONG_IDENTITY_AGENT = `export default {
  async fetch(request, env) {
    try {
      await env.TELEMETRY.report({ body: "{}", signature: "v1=" + "0".repeat(64), deploymentId: "dep_someone_else" });
      return Response.json({ output: { text: "accepted" } });
    } catch (err) {
      return Response.json({ output: { text: String(err.message) } });
    }
  },
};`;

async function telemetryRows(deploymentId: string) {
  return createDb(env.DB)
    .select()
    .from(metricsEvents)
    .where(and(eq(metricsEvents.deploymentId, deploymentId), eq(metricsEvents.source, "telemetry")));
}

describe("DISPATCH_MODE=host (the agent host over RPC)", () => {
  it("invokes the template through the host; its telemetry reaches the gateway for its own deployment", async () => {
    const { headers } = await newUser("host");
    const agent = await createAgent(headers);
    const deployment = await deployAndActivate(headers, agent.id);
    const res = await callWithEnv(HOST, "POST", `/v1/invoke/${agent.id}`, {
      headers,
      body: userMessage("hello through the host"),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { output: { text: string } };
    expect(body.output.text).toContain("hello through the host");
    const rows = await waitFor(async () => {
      const found = await telemetryRows(deployment.id);
      return found.length > 0 ? found : undefined;
    });
    expect(rows[0]).toMatchObject({ agentId: agent.id, deploymentId: deployment.id });
  });

  it("the host's TELEMETRY door carries the agent's identity: a report for another deployment is refused", async () => {
    const { headers } = await newUser("host-id");
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: WRONG_IDENTITY_AGENT });
    const res = await callWithEnv(HOST, "POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("x") });
    expect(res.status).toBe(200);
    const { output } = (await res.json()) as { output: { text: string } };
    expect(output.text).toMatch(/caller_identity/);
    expect(output.text).toMatch(/only report for its own deployment/);
  });

  it("a host that is down or restarting: 503 upstream_unavailable with Retry-After", async () => {
    const { headers } = await newUser("host-down");
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id);
    // What the dev registry's proxy throws when the host's process is gone (seen over HTTP in the e2e test).
    const gone = {
      deploy: () => Promise.reject(new Error("Network connection lost.")),
      invoke: () => Promise.reject(new Error("Network connection lost.")),
    };
    const res = await callWithEnv({ ...HOST, AGENT_HOST: gone }, "POST", `/v1/invoke/${agent.id}`, {
      headers,
      body: userMessage("x"),
    });
    expect(res.status, await res.clone().text()).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("upstream_unavailable");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("is refused in production: DISPATCH_MODE=host does not start, and the HostBridge door takes no identity there", async () => {
    const production = { ENVIRONMENT: "production", AUTH_AUDIENCE: "webhost-api" };
    await expectProblem(await callWithEnv({ ...production, ...HOST }, "GET", "/healthz"), 500, "configuration_error");
    const identity = { userId: "usr_x", agentId: "agt_x", deploymentId: "dep_x" };
    const bridge = new HostBridge(createExecutionContext(), { ...env, ...production });
    await expect(bridge.report(identity, {})).rejects.toThrow(/closed in production/);
    await expect(bridge.egress(identity, new Request("https://example.com/"))).rejects.toThrow(/closed in production/);
    await expect(bridge.storeLogs(identity, [])).rejects.toThrow(/closed in production/);
  });
});
