// The bench routes (src/bench/local-routes.ts) and the D1 statement counter behind them exist only
// in the bench entry (src/bench/entry.ts), which only `npm run bench` runs; the gateway's own
// worker (src/index.ts, wrangler.toml's main) has neither.

import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import benchWorker from "../src/bench/entry";
import { statementKind } from "../src/bench/statement-counter";
import indexSource from "../src/index.ts?raw";
import wranglerToml from "../wrangler.toml?raw";
import { fixedAnswer } from "./fixtures/modules";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { call, expectProblem, json } from "./helpers/http";

const BENCH_PATHS: Array<[string, string]> = [
  ["POST", "/__bench/baseline/dep_01m8an022dma5sftncd33emdb1"],
  ["POST", "/__bench/baseline/dep_01m8an022dma5sftncd33emdb1/stream"],
  ["POST", "/__bench/noop"],
  ["GET", "/__bench/noop"],
  ["GET", "/__bench/d1-statements"],
  ["POST", "/__bench/d1-statements/reset"],
  ["POST", "/__bench/fetch"],
  ["POST", "/__bench/reconcile-profile"],
];

/** One request to the bench entry, with `overrides` on top of the test env. */
async function callBench(
  overrides: Record<string, unknown>,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: unknown } = {},
): Promise<Response> {
  const headers = new Headers(opts.headers);
  if (opts.body !== undefined) headers.set("content-type", "application/json");
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const request = new Request(`http://gateway.test${path}`, { method, headers, body });
  const ctx = createExecutionContext();
  const res = await benchWorker.fetch(request, { ...env, ...overrides } as typeof env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

describe("bench routes", () => {
  it("do not exist in the gateway's worker: every one is its 404", async () => {
    for (const [method, path] of BENCH_PATHS) {
      const body = method === "POST" ? userMessage("x") : undefined;
      await expectProblem(await call(method, path, { body }), 404, "route_not_found");
    }
  });

  it("do not exist in the bench entry when it runs as production", async () => {
    for (const [method, path] of BENCH_PATHS) {
      const body = method === "POST" ? userMessage("x") : undefined;
      // Production refuses to serve without an audience (or authorized parties) to check tokens for.
      const res = await callBench({ ENVIRONMENT: "production", AUTH_AUDIENCE: "webhost-api" }, method, path, { body });
      await expectProblem(res, 404, "route_not_found");
    }
  });

  it("are never part of the worker wrangler.toml deploys", () => {
    expect(wranglerToml).toContain("[env.production]");
    expect(wranglerToml).toMatch(/^main = "src\/index\.ts"$/m);
    expect(wranglerToml).not.toMatch(/^\s*main\s*=\s*"src\/bench/m);
    expect(indexSource).not.toMatch(/bench/);
  });

  it("answer on the bench entry, which serves the gateway's routes too", async () => {
    expect((await callBench({}, "GET", "/__bench/noop")).status).toBe(200);
    expect((await callBench({}, "GET", "/healthz")).status).toBe(200);
  });

  it("call the deployment's loaded user worker and return its answer untouched", async () => {
    const { headers } = await newUser("bench");
    const agent = await createAgent(headers);
    const deployment = await deployAndActivate(headers, agent.id, {
      moduleCode: fixedAnswer("straight from the agent"),
    });
    const res = await callBench({}, "POST", `/__bench/baseline/${deployment.id}`, { body: userMessage("hi") });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ output: { text: "straight from the agent" } });
    const unknown = await callBench({}, "POST", "/__bench/baseline/dep_00000000000000000000000000", {
      body: userMessage("hi"),
    });
    await expectProblem(unknown, 404, "not_found");
  });

  it("count the D1 statements the isolate runs, reads apart from writes", async () => {
    const { headers } = await newUser("bench-count");
    await callBench({}, "POST", "/__bench/d1-statements/reset");
    const zero = await json(await callBench({}, "GET", "/__bench/d1-statements"));
    expect(zero).toEqual({ reads: 0, writes: 0, slowest: null });
    // A new user's first call inserts the user row (one batch: insert + select), then lists agents.
    expect((await callBench({}, "GET", "/v1/agents", { headers })).status).toBe(200);
    const counted = await json(await callBench({}, "GET", "/__bench/d1-statements"));
    expect(counted.writes).toBe(1);
    expect(counted.reads).toBe(2);
    // The slowest execution is kept with its SQL (a statement of the calls above, or their batch).
    expect(counted.slowest.ms).toBeGreaterThanOrEqual(0);
    expect(counted.slowest.sql).toMatch(/^(select|insert|batch of \d+)/i);
  });
});

describe("D1 statement kinds", () => {
  it("counts SELECTs (also behind WITH) as reads and anything that changes rows as writes", () => {
    expect(statementKind("select * from agents")).toBe("read");
    expect(statementKind("  SELECT 1")).toBe("read");
    expect(statementKind("with x as (select 1) select * from x")).toBe("read");
    expect(statementKind("with x as (select 1) insert into t select * from x")).toBe("write");
    expect(statementKind('insert into "users" ("id") values (?) on conflict do nothing')).toBe("write");
    expect(statementKind('update "agents" set "updated_at" = ?')).toBe("write");
    expect(statementKind('delete from "agents" where "deleted_at" is not null')).toBe("write");
    expect(statementKind('select "deleted_at", "updated_at" from "agents"')).toBe("read");
  });
});
