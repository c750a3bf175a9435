import { describe, expect, it } from "vitest";
import { call, json } from "./helpers/http";
import { servedRoutes } from "./helpers/routes";

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
