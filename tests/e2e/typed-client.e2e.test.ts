// The client generated from the OpenAPI document (clients/typescript) driving the whole flow
// against the dev server: what a tenant using a generated client would see.
import { describe, expect, it } from "vitest";
import { agentFlow } from "../../clients/typescript/flow.ts";
import { createApiClient } from "../../clients/typescript/index.ts";
import { e2e, newUser } from "./harness";

describe("the typed client generated from /openapi.json", () => {
  it("creates, deploys, invokes and streams an agent, and reads a problem by its typed code", async () => {
    const user = await newUser("typed-client");
    const api = createApiClient({ baseUrl: e2e.baseUrl, token: user.token });
    const result = await agentFlow(api, `typed-${crypto.randomUUID().slice(0, 8)}`);
    expect(result.replayed).toBe("true");
    expect(result.deployment.status).toBe("active");
    expect(result.answer.output.text).toBe("hello typed world");
    expect(result.deploymentIdHeader).toBe(result.deployment.id);
    expect(result.streamed.map((e) => e.event)).toEqual(["delta", "delta", "delta", "done"]);
    expect(result.missingAgent).toMatchObject({ status: 404, code: "not_found" });
    expect(result.missingAgent.requestId).toMatch(/^req_/);
  });
});
