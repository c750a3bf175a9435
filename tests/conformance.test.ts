// The gateway against its own OpenAPI document: a bounded, seeded property test in the manner of
// Schemathesis (scripts/lib/conformance.ts holds the generator and the checks), through the
// worker's own fetch handler. The e2e suite runs the same test over HTTP against `wrangler dev`.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type OpenApiDoc, runConformance } from "../scripts/lib/conformance.ts";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate } from "./helpers/deploy-flow";
import { call, json } from "./helpers/http";

describe("the gateway conforms to its own OpenAPI document", () => {
  for (const seed of [1, 2]) {
    it(`answers every generated request as documented (seed ${seed})`, async () => {
      const doc = await json<OpenApiDoc>(await call("GET", "/openapi.json"));
      const { token, headers } = await newUser();
      const agent = await createAgent(headers);
      const deployment = await deployAndActivate(headers, agent.id);
      const secret = await call("PUT", `/v1/agents/${agent.id}/secrets/API_TOKEN`, { headers, body: { value: "s" } });
      expect(secret.status).toBe(201);
      const report = await runConformance({
        doc,
        send: (request) => exports.default.fetch(request),
        baseUrl: "http://gateway.test",
        world: { token, agentId: agent.id, deploymentId: deployment.id, secretName: "API_TOKEN" },
        perOperation: 12,
        seed,
      });
      expect(report.failures).toEqual([]);
      // The run reached past authentication and validation, not only the first refusals.
      expect(report.statuses["200"]).toBeGreaterThan(20);
      expect(report.statuses["400"]).toBeGreaterThan(10);
      expect(report.requests).toBeGreaterThan(250);
    }, 120_000);
  }
});

describe("the conformance checker", () => {
  it("reports an undocumented status, a body off its schema, an undocumented header and a wrong 405", async () => {
    const doc: OpenApiDoc = {
      paths: {
        "/thing": {
          get: {
            operationId: "getThing",
            responses: {
              200: {
                headers: { "x-request-id": { $ref: "#/components/headers/RequestId" } },
                content: {
                  "application/json": {
                    schema: { type: "object", required: ["id"], properties: { id: { type: "string" } } },
                  },
                },
              },
            },
          },
        },
      },
      components: { headers: { RequestId: { required: true, schema: { type: "string" } } } },
    };
    let n = 0;
    const answers = [
      () => Response.json({ id: 1 }, { headers: { "x-request-id": "r" } }),
      () => Response.json({ id: "a" }, { status: 418, headers: { "x-request-id": "r" } }),
      () => Response.json({ id: "a" }, { headers: { "x-request-id": "r", "retry-after": "1" } }),
      () => Response.json({ id: "a" }),
    ];
    const report = await runConformance({
      doc,
      send: async (request) =>
        request.method === "GET" ? answers[n++ % answers.length]!() : new Response(null, { status: 404 }),
      baseUrl: "http://x.test",
      world: { token: "t", agentId: "a", deploymentId: "d", secretName: "S" },
      perOperation: 4,
      seed: 1,
    });
    expect(report.failures).toEqual([
      expect.stringMatching(/→ 200: body.id: 1 is not string/),
      expect.stringMatching(/→ 418: status not documented/),
      expect.stringMatching(/→ 200: header retry-after sent but not documented/),
      expect.stringMatching(/→ 200: required header x-request-id missing/),
      expect.stringMatching(/PUT \/thing: 404, not 405/),
    ]);
  });
});
