import { describe, expect, it } from "vitest";
import { InvokeStreamEventSchema } from "../src/routes/v1/invoke/schemas";
import * as modules from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { call, json } from "./helpers/http";
import { servedRoutes } from "./helpers/routes";
import { collectSse } from "./helpers/sse";

describe("OpenAPI document", () => {
  it("describes every route the app serves, and nothing it does not", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    expect(doc.openapi).toBe("3.1.0");
    const documented: string[] = [];
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(item)) documented.push(`${method.toUpperCase()} ${path}`);
    }
    expect(documented.sort()).toEqual(servedRoutes());
    expect(servedRoutes()).toContain("POST /v1/agents");
  });

  it("serves a human-readable docs page listing the routes", async () => {
    const res = await call("GET", "/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).toContain("/v1/agents/{agentId}");
  });
});

describe("what a generated client needs from the document", () => {
  it("names every operation once, with a tag", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    const ids: string[] = [];
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Record<string, unknown>>>)) {
      for (const [method, op] of Object.entries(item)) {
        expect(op.operationId, `${method.toUpperCase()} ${path} has no operationId`).toMatch(/^[a-z][A-Za-z]+$/);
        expect((op.tags as string[] | undefined)?.length, `${method.toUpperCase()} ${path} has no tag`).toBeGreaterThan(
          0,
        );
        ids.push(op.operationId as string);
      }
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(["createAgent", "deployAgent", "invokeAgent", "invokeAgentStream"]));
  });

  it("types the problem code as the closed set of codes the server answers", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    const problem = doc.components.schemas.Problem;
    expect(problem.properties.code.enum).toEqual(expect.arrayContaining(["validation_failed", "payload_too_large"]));
    expect(problem.properties.limitBytes).toBeDefined();
    const create = doc.paths["/v1/agents"].post.responses;
    expect(Object.keys(create)).toEqual(expect.arrayContaining(["413", "415"]));
    expect(Object.keys(doc.paths["/v1/invoke/{agentId}"].post.responses)).toContain("429");
  });
});

describe("a known path with a wrong method", () => {
  it("answers 405 with Allow listing the methods the path does answer", async () => {
    const res = await call("PUT", "/v1/agents");
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, HEAD, POST");
    expect(await res.json()).toMatchObject({ code: "method_not_allowed", status: 405 });
    const item = await call("POST", "/v1/agents/agt_x/deployments/dep_y");
    expect(item.status).toBe(405);
    expect(item.headers.get("allow")).toBe("GET, HEAD");
  });

  it("still answers 404 for a path no route has", async () => {
    const res = await call("PUT", "/v1/nothing-here");
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: "route_not_found" });
  });
});

describe("the committed document", () => {
  it("is what the server serves (docs/openapi.json: regenerate with `npx vitest run tests/openapi.test.ts -u`)", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    await expect(`${JSON.stringify(doc, null, 2)}\n`).toMatchFileSnapshot("../docs/openapi.json");
  });
});

/** The headers a client may read, by the name the document gives them. */
const CLIENT_HEADERS = [
  "x-request-id",
  "x-deployment-id",
  "location",
  "retry-after",
  "ratelimit",
  "ratelimit-policy",
  "idempotent-replayed",
];

type Doc = any;

function documentedHeaders(doc: Doc, method: string, path: string, status: number): string[] {
  const response = doc.paths[path][method.toLowerCase()].responses[String(status)];
  expect(response, `${method} ${path} does not document ${status}`).toBeDefined();
  return Object.keys(response.headers ?? {}).map((h) => h.toLowerCase());
}

/** Every header of CLIENT_HEADERS the server sent is documented on that operation's response. */
function expectHeadersDocumented(doc: Doc, method: string, path: string, res: Response) {
  const sent = CLIENT_HEADERS.filter((h) => res.headers.has(h));
  expect(sent).toContain("x-request-id");
  expect(documentedHeaders(doc, method, path, res.status)).toEqual(expect.arrayContaining(sent));
}

describe("response headers", () => {
  it("declares each header once, and x-request-id on every response of every operation", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    expect(doc.components.headers.RequestId.required).toBe(true);
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        for (const [status, response] of Object.entries(op.responses as Record<string, any>)) {
          expect(response.headers?.["x-request-id"], `${method} ${path} ${status}`).toEqual({
            $ref: "#/components/headers/RequestId",
          });
          if (status === "429" || status === "503") expect(response.headers["Retry-After"]).toBeDefined();
        }
      }
    }
  });

  it("documents every header the server sends on the answers of a deploy-and-invoke flow", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    const { headers } = await newUser();
    const created = await call("POST", "/v1/agents", {
      headers: { ...headers, "idempotency-key": "create-1" },
      body: { name: `headers-${crypto.randomUUID().slice(0, 8)}` },
    });
    expectHeadersDocumented(doc, "POST", "/v1/agents", created);
    const agentId = (await json(created)).agent.id;
    const replayed = await call("POST", "/v1/agents", {
      headers: { ...headers, "idempotency-key": "create-1" },
      body: { name: "another-name" },
    });
    expect(replayed.status).toBe(422);
    expectHeadersDocumented(doc, "POST", "/v1/agents", replayed);

    const deployed = await call("POST", `/v1/agents/${agentId}/deploy`, { headers, body: {} });
    expect(deployed.status).toBe(202);
    expect(deployed.headers.get("location")).toMatch(/^\/v1\/agents\/.+\/deployments\/dep_/);
    expectHeadersDocumented(doc, "POST", "/v1/agents/{agentId}/deploy", deployed);

    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id);
    const invoked = await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("hi") });
    expect(invoked.status).toBe(200);
    expect(invoked.headers.get("ratelimit")).toBeTruthy();
    expectHeadersDocumented(doc, "POST", "/v1/invoke/{agentId}", invoked);
    const streamed = await call("POST", `/v1/invoke/${agent.id}/stream`, {
      headers: { ...headers, "idempotency-key": "stream-1" },
      body: userMessage("hi"),
    });
    await streamed.text();
    expectHeadersDocumented(doc, "POST", "/v1/invoke/{agentId}/stream", streamed);

    const bad = await call("GET", "/v1/metrics/recent?agentId=x&limit=0", { headers });
    expect(bad.status).toBe(400);
    expectHeadersDocumented(doc, "GET", "/v1/metrics/recent", bad);
  });

  it("declares Idempotency-Key on every POST that honours it, with the answers it can cause", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    expect(doc.components.parameters.IdempotencyKey).toMatchObject({ name: "Idempotency-Key", in: "header" });
    const posts = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
      item.post ? [{ path, op: item.post }] : [],
    );
    // Not for a new API key or webhook secret (never stored in the clear) nor for signed telemetry
    // (no user principal).
    const exempt = ["createApiKey", "createWebhook", "rotateWebhookSecret", "reportTelemetry"];
    for (const { path, op } of posts.filter(({ op }) => !exempt.includes(op.operationId))) {
      expect(op.parameters, path).toContainEqual({ $ref: "#/components/parameters/IdempotencyKey" });
      expect(Object.keys(op.responses), path).toEqual(expect.arrayContaining(["409", "422"]));
      const success = Object.keys(op.responses).find((s) => s.startsWith("2"))!;
      expect(op.responses[success].headers["Idempotent-Replayed"], path).toBeDefined();
    }
    expect(doc.paths["/v1/agents/{agentId}/deploy"].post.responses["202"].headers.Location).toBeDefined();
  });
});

describe("stream events", () => {
  it("the stream's media type names one schema per event type", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    const media = doc.paths["/v1/invoke/{agentId}/stream"].post.responses["200"].content["text/event-stream"];
    expect(media["x-itemSchema"]).toEqual({ $ref: "#/components/schemas/InvokeStreamEvent" });
    const union = doc.components.schemas.InvokeStreamEvent;
    expect(union.discriminator.propertyName).toBe("event");
    const names = (union.oneOf as { $ref: string }[]).map((s) => {
      const schema = doc.components.schemas[s.$ref.split("/").at(-1)!];
      return schema.properties.event.enum?.[0] ?? schema.properties.event.const;
    });
    expect(names.sort()).toEqual(["delta", "done", "error"]);
    expect(doc.components.schemas.InvokeStreamDone.properties.data).toEqual({
      $ref: "#/components/schemas/InvokeResponse",
    });
  });

  it("every event the server streams, a failing stream's too, is one the document describes", async () => {
    const { headers } = await newUser();
    for (const moduleCode of [undefined, modules.STREAM_FAILS_MIDWAY]) {
      const agent = await createAgent(headers);
      await deployAndActivate(headers, agent.id, moduleCode ? { moduleCode } : {});
      const res = await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("one two") });
      expect(res.status).toBe(200);
      const events = await collectSse(res);
      for (const { event, data } of events) {
        expect(InvokeStreamEventSchema.safeParse({ event, data }).success, `${event} ${JSON.stringify(data)}`).toBe(
          true,
        );
      }
      expect(events.at(-1)?.event).toBe(moduleCode ? "error" : "done");
    }
  });
});

describe("input rules the server enforces are in the document", () => {
  it("declares them on the parameters and bodies", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    const secretValue =
      doc.paths["/v1/agents/{agentId}/secrets/{name}"].put.requestBody.content["application/json"].schema.properties
        .value;
    expect(secretValue).toMatchObject({ minLength: 1, maxLength: 5120 });
    const sinceMs = doc.paths["/v1/metrics/recent"].get.parameters.find((p: any) => p.name === "sinceMs");
    expect(sinceMs.schema).toMatchObject({ type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
    const date =
      doc.paths["/v1/agents/{agentId}/deploy"].post.requestBody.content["application/json"].schema.properties
        .compatibilityDate;
    expect(date).toMatchObject({ type: "string", format: "date", pattern: "^\\d{4}-\\d{2}-\\d{2}$" });
    expect(date.description).toMatch(/real calendar date, not after today/);
    for (const path of ["/v1/agents", "/v1/audit"]) {
      const cursor = doc.paths[path].get.parameters.find((p: any) => p.name === "cursor");
      expect(cursor.description, path).toMatch(/^Opaque: pass back the `nextCursor`/);
    }
  });

  it("names the real rule when sinceMs is too large for an exact integer", async () => {
    const { headers } = await newUser();
    for (const sinceMs of ["9007199254740992", "99999999999999999"]) {
      const res = await call("GET", `/v1/metrics/recent?agentId=agt_x&sinceMs=${sinceMs}`, { headers });
      expect(res.status).toBe(400);
      expect((await json(res)).errors).toEqual([
        { location: "query.sinceMs", message: "sinceMs must be at most 9007199254740991 (2^53 - 1)" },
      ]);
    }
  });
});
