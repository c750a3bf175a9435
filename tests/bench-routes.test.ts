// The local-only bench routes (src/bench/local-routes.ts) and the D1 statement counter behind
// them exist only on a server started with BENCH_BASELINE="1" — which only `npm run bench` does.

import { describe, expect, it } from "vitest";
import { statementKind } from "../src/db/statement-counter";
import wranglerToml from "../wrangler.toml?raw";
import { fixedAnswer } from "./fixtures/modules";
import { callWithEnv } from "./helpers/app";
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
];

describe("bench routes", () => {
  it("do not exist without BENCH_BASELINE: every one is the gateway's 404", async () => {
    for (const [method, path] of BENCH_PATHS) {
      const body = method === "POST" ? userMessage("x") : undefined;
      await expectProblem(await call(method, path, { body }), 404, "route_not_found");
    }
  });

  it("do not exist in production even if BENCH_BASELINE is set", async () => {
    for (const [method, path] of BENCH_PATHS) {
      const body = method === "POST" ? userMessage("x") : undefined;
      const res = await callWithEnv({ BENCH_BASELINE: "1", ENVIRONMENT: "production" }, method, path, { body });
      await expectProblem(res, 404, "route_not_found");
    }
  });

  it("are never switched on by wrangler.toml, locally or in production", () => {
    expect(wranglerToml).toContain("[env.production]");
    expect(wranglerToml).not.toMatch(/BENCH_BASELINE/);
  });

  it("call the deployment's loaded user worker and return its answer untouched", async () => {
    const { headers } = await newUser("bench");
    const agent = await createAgent(headers);
    const deployment = await deployAndActivate(headers, agent.id, {
      moduleCode: fixedAnswer("straight from the agent"),
    });
    const bench = { BENCH_BASELINE: "1" };
    const res = await callWithEnv(bench, "POST", `/__bench/baseline/${deployment.id}`, { body: userMessage("hi") });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ output: { text: "straight from the agent" } });
    const unknown = await callWithEnv(bench, "POST", "/__bench/baseline/dep_00000000000000000000000000", {
      body: userMessage("hi"),
    });
    await expectProblem(unknown, 404, "not_found");
  });

  it("count the D1 statements the isolate runs, reads apart from writes", async () => {
    const bench = { BENCH_BASELINE: "1" };
    const { headers } = await newUser("bench-count");
    await callWithEnv(bench, "POST", "/__bench/d1-statements/reset");
    const zero = await json(await callWithEnv(bench, "GET", "/__bench/d1-statements"));
    expect(zero).toEqual({ reads: 0, writes: 0, enabled: true });
    // A new user's first call inserts the user row (one batch: insert + select), then lists agents.
    expect((await callWithEnv(bench, "GET", "/v1/agents", { headers })).status).toBe(200);
    const counted = await json(await callWithEnv(bench, "GET", "/__bench/d1-statements"));
    expect(counted.writes).toBe(1);
    expect(counted.reads).toBe(2);
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
