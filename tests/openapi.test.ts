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
