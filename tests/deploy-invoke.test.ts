import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { TEMPLATE_MODULE_SHA256 } from "../src/services/deployments/template-module.generated";
import { fixedAnswer } from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import {
  createAgent,
  deploy,
  deployAndActivate,
  expectPointerInvariant,
  userMessage,
  waitUntilSettled,
} from "./helpers/deploy-flow";
import { call, json } from "./helpers/http";
import { collectSse } from "./helpers/sse";
import { waitFor } from "./helpers/wait";

describe("deploy and invoke: the whole loop", () => {
  it("deploys the template through the real queue, invokes it (JSON and SSE), deploys again, rolls back, and sees the signed telemetry", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);

    const accepted = await deploy(headers, agent.id);
    expect(accepted).toMatchObject({ agentId: agent.id, status: "deploying", runtimeProvider: "cloudflare" });
    expect(accepted.moduleSha256).toBe(TEMPLATE_MODULE_SHA256);
    const v1 = await waitUntilSettled(headers, agent.id, accepted.id);
    expect(v1.status).toBe("active");
    expect(v1.activatedAt).toBeGreaterThanOrEqual(v1.createdAt as number);
    expect((await json(await call("GET", `/v1/agents/${agent.id}`, { headers }))).agent.activeDeploymentId).toBe(v1.id);

    const res = await call("POST", `/v1/invoke/${agent.id}`, {
      headers,
      body: { ...userMessage("hello loop"), sessionId: "loop-session" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-deployment-id")).toBe(v1.id);
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    expect(await json(res)).toEqual({
      output: { text: "hello loop" },
      sessionId: "loop-session",
      usage: { inputTokens: 2, outputTokens: 2 },
    });

    const stream = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("one two three") });
    expect(stream.status).toBe(200);
    expect(stream.headers.get("x-deployment-id")).toBe(v1.id);
    const events = await collectSse(stream);
    expect(events.map((e) => e.event)).toEqual(["delta", "delta", "delta", "done"]);
    expect(events.at(-1)!.data.output.text).toBe("one two three");

    const v2 = await deployAndActivate(headers, agent.id, { moduleCode: fixedAnswer("version two") });
    expect(await expectPointerInvariant(agent.id)).toBe(v2.id);
    const second = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("hello") });
    expect((await json(second)).output.text).toBe("version two");

    const rolledBack = await call("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`, { headers });
    expect(rolledBack.status).toBe(200);
    expect(await expectPointerInvariant(agent.id)).toBe(v1.id);
    const third = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("back again") });
    expect(third.headers.get("x-deployment-id")).toBe(v1.id);
    expect((await json(third)).output.text).toBe("back again");

    // One gateway measurement per invocation, attributed to the deployment that answered.
    const rows = await waitFor(async () => {
      const r = await env.DB.prepare(
        "SELECT deployment_id, streaming, status FROM metrics_events WHERE agent_id = ? AND source = 'gateway' ORDER BY ts",
      )
        .bind(agent.id)
        .all<{ deployment_id: string; streaming: number; status: string }>();
      return r.results.length === 4 ? r.results : undefined;
    });
    expect(rows).toEqual([
      { deployment_id: v1.id, streaming: 0, status: "ok" },
      { deployment_id: v1.id, streaming: 1, status: "ok" },
      { deployment_id: v2.id, streaming: 0, status: "ok" },
      { deployment_id: v1.id, streaming: 0, status: "ok" },
    ]);

    // The template signed one telemetry event per invocation (v2 reports none), and the gateway's
    // TelemetrySink verified and stored each, with the template's token estimates.
    const telemetry = await waitFor(async () => {
      const r = await env.DB.prepare(
        "SELECT deployment_id, status, input_tokens, output_tokens FROM metrics_events WHERE agent_id = ? AND source = 'telemetry' ORDER BY ts",
      )
        .bind(agent.id)
        .all<{ deployment_id: string; status: string; input_tokens: number; output_tokens: number }>();
      return r.results.length === 3 ? r.results : undefined;
    });
    expect(telemetry).toEqual([
      { deployment_id: v1.id, status: "ok", input_tokens: 2, output_tokens: 2 },
      { deployment_id: v1.id, status: "ok", input_tokens: 3, output_tokens: 3 },
      { deployment_id: v1.id, status: "ok", input_tokens: 2, output_tokens: 2 },
    ]);
  });
});
