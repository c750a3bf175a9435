// The live dev server against its own OpenAPI document: the property test of
// scripts/lib/conformance.ts (also run in the Workers runtime by tests/conformance.test.ts), here
// over real HTTP, with a world (an agent with an active deployment and a secret) built through
// the typed client.
import { describe, expect, it } from "vitest";
import { agentFlow } from "../../clients/typescript/flow.ts";
import { createApiClient } from "../../clients/typescript/index.ts";
import { type OpenApiDoc, runConformance } from "../../scripts/lib/conformance.ts";
import { e2e, newUser } from "./harness";

describe("the dev server conforms to the document it serves", () => {
  it("answers every generated request as documented", async () => {
    const user = await newUser("conformance");
    const api = createApiClient({ baseUrl: e2e.baseUrl, token: user.token });
    const { agent, deployment } = await agentFlow(api, `conformance-${crypto.randomUUID().slice(0, 8)}`);
    const secret = await api.PUT("/v1/agents/{agentId}/secrets/{name}", {
      params: { path: { agentId: agent.id, name: "API_TOKEN" } },
      body: { value: "s" },
    });
    expect(secret.response.status).toBe(201);
    const doc = (await (await fetch(`${e2e.baseUrl}/openapi.json`)).json()) as OpenApiDoc;
    const report = await runConformance({
      doc,
      send: (request) => fetch(request),
      baseUrl: e2e.baseUrl,
      world: { token: user.token, agentId: agent.id, deploymentId: deployment.id, secretName: "API_TOKEN" },
      perOperation: 7,
      seed: 3,
    });
    expect(report.failures).toEqual([]);
    expect(report.requests).toBeGreaterThan(150);
  });
});
