import { describe, expect, it } from "vitest";
import { TEMPLATE_MODULE_SHA256 } from "../user-worker-template/dist/template-module";
import { newUser } from "./helpers/auth";
import { createAgent, deploy, deployAndActivate, userMessage, waitUntilSettled } from "./helpers/deployments";
import { call, json } from "./helpers/http";
import { collectSse } from "./helpers/sse";

describe("deploy and invoke: the whole loop", () => {
  it("deploys the template through the queue, activates it, and answers JSON and SSE", async () => {
    const { headers } = await newUser();
    const agent = await createAgent(headers);
    const accepted = await deploy(headers, agent.id);
    expect(accepted).toMatchObject({ agentId: agent.id, status: "deploying", runtimeProvider: "cloudflare" });
    expect(accepted.moduleSha256).toBe(TEMPLATE_MODULE_SHA256);
    const active = await waitUntilSettled(headers, agent.id, accepted.id);
    expect(active.status).toBe("active");

    const res = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("hello loop") });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-deployment-id")).toBe(accepted.id);
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    expect(await json(res)).toMatchObject({ output: { text: "hello loop" } });

    const stream = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("one two three") });
    expect(stream.status).toBe(200);
    const events = await collectSse(stream);
    expect(events.map((e) => e.event)).toEqual(["delta", "delta", "delta", "done"]);
  });
});
