// GET /v1/metrics/recent and GET /v1/usage/current: tenant isolation, parameter validation and
// the usage numbers (gateway measurements + verified telemetry tokens).
import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { billingUsage, subscriptions } from "../src/db/schema";
import { newId } from "../src/lib/ids";
import { DEFAULT_TIER_LIMITS } from "../src/services/usage/tiers";
import { newUser } from "./helpers/auth";
import { insertGatewayEvent, seedDeployment, signTelemetry, telemetryEvent } from "./helpers/deployments";
import { call, expectProblem, json } from "./helpers/http";
import { drainUsageQueue } from "./helpers/usage-queue";

/** Reports signed telemetry and waits until the usage queue's consumer has stored it. */
async function reportOk(dep: Awaited<ReturnType<typeof seedDeployment>>, events: Record<string, unknown>[]) {
  const body = JSON.stringify({ events });
  const res = await call("POST", "/v1/telemetry/report", {
    headers: {
      "content-type": "application/json",
      "x-telemetry-signature": await signTelemetry(dep.secret, body),
      "x-telemetry-deployment-id": dep.deploymentId,
    },
    rawBody: body,
  });
  expect(res.status).toBe(202);
  await drainUsageQueue();
}

function currentPeriodKey(): string {
  const d = new Date();
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

describe("GET /v1/metrics/recent", () => {
  it("lists an agent's gateway and telemetry events newest first", async () => {
    const dep = await seedDeployment();
    const now = Date.now();
    await insertGatewayEvent(dep, { status: "ok", durationMs: 20, bytesIn: 100, bytesOut: 200, ts: now - 3000 });
    await reportOk(dep, [telemetryEvent(dep, { ts: now - 2000, traceId: "tr-1" })]);
    await insertGatewayEvent(dep, {
      status: "error",
      durationMs: 5,
      bytesIn: 10,
      bytesOut: 0,
      streaming: true,
      ts: now - 1000,
    });

    const res = await call("GET", `/v1/metrics/recent?agentId=${dep.agentId}`, { headers: dep.owner.headers });
    expect(res.status).toBe(200);
    const { events } = await json(res);
    expect(events.map((e: { source: string; ts: number }) => [e.source, e.ts])).toEqual([
      ["gateway", now - 1000],
      ["telemetry", now - 2000],
      ["gateway", now - 3000],
    ]);
    expect(events[0]).toMatchObject({ status: "error", streaming: true, bytesIn: 10, deploymentId: dep.deploymentId });
    expect(events[1]).toMatchObject({ traceId: "tr-1", inputTokens: 3, outputTokens: 5, agentId: dep.agentId });
    expect(Object.keys(events[1]).sort()).toEqual(
      [
        "id",
        "agentId",
        "deploymentId",
        "source",
        "eventId",
        "traceId",
        "runtimeProvider",
        "kind",
        "ts",
        "durationMs",
        "status",
        "errorCode",
        "inputTokens",
        "outputTokens",
        "bytesIn",
        "bytesOut",
        "streaming",
        "host",
        "provider",
        "model",
        "receivedAt",
      ].sort(),
    );
  });

  it("honours sinceMs and limit", async () => {
    const dep = await seedDeployment();
    const now = Date.now();
    for (let i = 5; i >= 1; i--) {
      await insertGatewayEvent(dep, { status: "ok", durationMs: i, bytesIn: 1, bytesOut: 1, ts: now - i * 1000 });
    }
    const since = await json(
      await call("GET", `/v1/metrics/recent?agentId=${dep.agentId}&sinceMs=${now - 3000}`, {
        headers: dep.owner.headers,
      }),
    );
    expect(since.events.map((e: { ts: number }) => e.ts)).toEqual([now - 1000, now - 2000, now - 3000]);
    const limited = await json(
      await call("GET", `/v1/metrics/recent?agentId=${dep.agentId}&limit=2`, { headers: dep.owner.headers }),
    );
    expect(limited.events.map((e: { ts: number }) => e.ts)).toEqual([now - 1000, now - 2000]);
  });

  it("shows only the agent asked for", async () => {
    const dep = await seedDeployment();
    const sibling = await seedDeployment({ owner: dep.owner });
    await insertGatewayEvent(dep, { status: "ok", durationMs: 1, bytesIn: 1, bytesOut: 1 });
    await insertGatewayEvent(sibling, { status: "ok", durationMs: 1, bytesIn: 1, bytesOut: 1 });
    const { events } = await json(
      await call("GET", `/v1/metrics/recent?agentId=${sibling.agentId}`, { headers: dep.owner.headers }),
    );
    expect(events).toHaveLength(1);
    expect(events[0].agentId).toBe(sibling.agentId);
  });

  it("returns 404 for another user's agent and 401 without a token", async () => {
    const dep = await seedDeployment();
    await insertGatewayEvent(dep, { status: "ok", durationMs: 1, bytesIn: 1, bytesOut: 1 });
    const stranger = await newUser();
    const path = `/v1/metrics/recent?agentId=${dep.agentId}`;
    await expectProblem(await call("GET", path, { headers: stranger.headers }), 404, "not_found");
    await expectProblem(await call("GET", path), 401, "unauthenticated");
    await expectProblem(
      await call("GET", `/v1/metrics/recent?agentId=${newId("agent")}`, { headers: dep.owner.headers }),
      404,
      "not_found",
    );
  });

  it("returns 404 for a deleted agent", async () => {
    const dep = await seedDeployment();
    expect((await call("DELETE", `/v1/agents/${dep.agentId}`, { headers: dep.owner.headers })).status).toBe(204);
    await expectProblem(
      await call("GET", `/v1/metrics/recent?agentId=${dep.agentId}`, { headers: dep.owner.headers }),
      404,
      "not_found",
    );
  });

  it.each([
    ["", "query.agentId"],
    ["agentId=", "query.agentId"],
    ["agentId=AGENT&limit=0", "query.limit"],
    ["agentId=AGENT&limit=201", "query.limit"],
    ["agentId=AGENT&limit=1e9", "query.limit"],
    ["agentId=AGENT&limit=-1", "query.limit"],
    ["agentId=AGENT&limit=NaN", "query.limit"],
    ["agentId=AGENT&limit=1.5", "query.limit"],
    ["agentId=AGENT&sinceMs=-5", "query.sinceMs"],
    ["agentId=AGENT&sinceMs=yesterday", "query.sinceMs"],
    ["agentId=AGENT&sinceMs=1.5", "query.sinceMs"],
    ["agentId=AGENT&sinceMs=1e12", "query.sinceMs"],
    ["agentId=AGENT&sinceMs=99999999999999999", "query.sinceMs"],
  ])("refuses the query %j (400 naming %s)", async (query, location) => {
    const dep = await seedDeployment();
    const res = await call("GET", `/v1/metrics/recent?${query.replace("AGENT", dep.agentId)}`, {
      headers: dep.owner.headers,
    });
    const problem = await expectProblem(res, 400, "validation_failed");
    expect(problem.errors.map((e: { location: string }) => e.location)).toContain(location);
  });
});

describe("GET /v1/usage/current", () => {
  it("answers zeros and the free tier for a new user", async () => {
    const user = await newUser();
    const res = await call("GET", "/v1/usage/current", { headers: user.headers });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({
      periodKey: currentPeriodKey(),
      tier: "free",
      usage: {
        requests: 0,
        errors: 0,
        durationMsTotal: 0,
        bytesIn: 0,
        bytesOut: 0,
        inputTokens: 0,
        outputTokens: 0,
        modelInputTokens: 0,
        modelOutputTokens: 0,
        egressRequests: 0,
      },
      limits: DEFAULT_TIER_LIMITS.free,
      remaining: {
        invocations: DEFAULT_TIER_LIMITS.free.invocationsPerPeriod,
        agents: DEFAULT_TIER_LIMITS.free.agents,
        deploysToday: DEFAULT_TIER_LIMITS.free.deploysPerDay,
      },
      agents: [],
    });
  });

  it("sums gateway requests and errors and telemetry tokens for this period, across agents", async () => {
    const dep = await seedDeployment();
    const second = await seedDeployment({ owner: dep.owner });
    await insertGatewayEvent(dep, { status: "ok", durationMs: 10, bytesIn: 100, bytesOut: 1000 });
    await insertGatewayEvent(dep, { status: "error", durationMs: 30, bytesIn: 50, bytesOut: 0 });
    await insertGatewayEvent(second, { status: "ok", durationMs: 5, bytesIn: 7, bytesOut: 9, streaming: true });
    await reportOk(dep, [
      telemetryEvent(dep, { usage: { inputTokens: 10, outputTokens: 20 } }),
      telemetryEvent(dep, { usage: { inputTokens: 1 } }),
      telemetryEvent(dep, { usage: undefined, status: "error" }),
    ]);
    await reportOk(second, [telemetryEvent(second, { usage: { inputTokens: 100, outputTokens: 200 } })]);
    // Outside the period: last month's gateway event is not counted.
    const lastMonth = new Date();
    lastMonth.setUTCDate(1);
    lastMonth.setUTCHours(0, 0, 0, 0);
    await insertGatewayEvent(dep, {
      status: "ok",
      durationMs: 999,
      bytesIn: 999,
      bytesOut: 999,
      ts: lastMonth.getTime() - 1,
    });
    // Another user's usage is not counted.
    const stranger = await seedDeployment();
    await insertGatewayEvent(stranger, { status: "error", durationMs: 1, bytesIn: 1, bytesOut: 1 });

    const expected = {
      requests: 3,
      errors: 1,
      durationMsTotal: 45,
      bytesIn: 157,
      bytesOut: 1009,
      inputTokens: 111,
      outputTokens: 220,
    };
    const res = await call("GET", "/v1/usage/current", { headers: dep.owner.headers });
    const report = await json(res);
    expect(report).toMatchObject({ periodKey: currentPeriodKey(), tier: "free", usage: expected });
    expect(report.remaining.invocations).toBe(DEFAULT_TIER_LIMITS.free.invocationsPerPeriod - 3);
    // The per-agent breakdown adds up to the totals.
    expect(report.agents.map((a: { agentId: string }) => a.agentId).sort()).toEqual(
      [dep.agentId, second.agentId].sort(),
    );
    const first = report.agents.find((a: { agentId: string }) => a.agentId === dep.agentId);
    expect(first.usage).toEqual({
      requests: 2,
      errors: 1,
      durationMsTotal: 40,
      bytesIn: 150,
      bytesOut: 1000,
      inputTokens: 11,
      outputTokens: 20,
      modelInputTokens: 0,
      modelOutputTokens: 0,
      egressRequests: 0,
    });
    // The metered counters (billing_usage) agree with the events they were incremented from.
    const metered = await createDb(env.DB)
      .select()
      .from(billingUsage)
      .where(and(eq(billingUsage.userId, dep.userId), eq(billingUsage.periodKey, currentPeriodKey())));
    const sum = (k: keyof typeof expected) => metered.reduce((n, r) => n + r[k], 0);
    expect(Object.fromEntries(Object.keys(expected).map((k) => [k, sum(k as keyof typeof expected)]))).toEqual(
      expected,
    );
  });

  it("reports the tier of the newest active subscription", async () => {
    const dep = await seedDeployment();
    const db = createDb(env.DB);
    const now = Date.now();
    await db.insert(subscriptions).values([
      {
        id: newId("subscription", now - 2),
        userId: dep.userId,
        tier: "enterprise",
        status: "canceled",
        createdAt: now - 2,
        updatedAt: now,
      },
      {
        id: newId("subscription", now - 1),
        userId: dep.userId,
        tier: "pro",
        status: "active",
        createdAt: now - 1,
        updatedAt: now,
      },
    ]);
    const res = await call("GET", "/v1/usage/current", { headers: dep.owner.headers });
    expect((await json(res)).tier).toBe("pro");
    const stranger = await newUser();
    expect((await json(await call("GET", "/v1/usage/current", { headers: stranger.headers }))).tier).toBe("free");
  });

  it("requires a token", async () => {
    await expectProblem(await call("GET", "/v1/usage/current"), 401, "unauthenticated");
  });
});

describe("OpenAPI document", () => {
  it("describes the telemetry, metrics and usage routes", async () => {
    const doc = await json(await call("GET", "/openapi.json"));
    const report = doc.paths["/v1/telemetry/report"].post;
    expect(report.security).toBeUndefined();
    expect(report.parameters.map((p: { name: string }) => p.name).sort()).toEqual([
      "x-telemetry-deployment-id",
      "x-telemetry-signature",
    ]);
    expect(Object.keys(report.responses).sort()).toEqual(["202", "400", "401", "413", "415", "429", "503"]);
    expect(report.requestBody.content["application/json"].schema).toBeDefined();
    const recent = doc.paths["/v1/metrics/recent"].get;
    expect(recent.parameters.map((p: { name: string }) => p.name).sort()).toEqual(["agentId", "limit", "sinceMs"]);
    expect(doc.paths["/v1/usage/current"].get.responses["200"]).toBeDefined();
  });
});

describe("GET /v1/usage?period=", () => {
  it("reports an earlier period with its per-agent breakdown, and only the invocations that remained", async () => {
    const dep = await seedDeployment();
    const lastMonth = new Date();
    lastMonth.setUTCDate(1);
    lastMonth.setUTCHours(0, 0, 0, 0);
    const ts = lastMonth.getTime() - 1000;
    await insertGatewayEvent(dep, { status: "ok", durationMs: 4, bytesIn: 1, bytesOut: 2, ts });
    await insertGatewayEvent(dep, { status: "error", durationMs: 6, bytesIn: 1, bytesOut: 2, ts });
    const period = new Date(ts).toISOString().slice(0, 7);
    const report = await json(await call("GET", `/v1/usage?period=${period}`, { headers: dep.owner.headers }));
    expect(report).toMatchObject({
      periodKey: period,
      tier: "free",
      usage: { requests: 2, errors: 1, durationMsTotal: 10 },
    });
    expect(report.remaining).toEqual({ invocations: DEFAULT_TIER_LIMITS.free.invocationsPerPeriod - 2 });
    expect(report.agents).toEqual([
      expect.objectContaining({
        agentId: dep.agentId,
        deleted: false,
        usage: expect.objectContaining({ requests: 2 }),
      }),
    ]);
    // The current period does not include last month's events; another user sees none of it.
    const current = await json(await call("GET", "/v1/usage/current", { headers: dep.owner.headers }));
    expect(current.usage.requests).toBe(0);
    const stranger = await newUser();
    const theirs = await json(await call("GET", `/v1/usage?period=${period}`, { headers: stranger.headers }));
    expect(theirs.agents).toEqual([]);
    expect(theirs.usage.requests).toBe(0);
  });

  it("refuses a malformed, missing or future period", async () => {
    const user = await newUser();
    for (const q of ["", "?period=2026-13", "?period=2026-1", "?period=26-01", "?period=9999-01", "?period=abc"]) {
      await expectProblem(await call("GET", `/v1/usage${q}`, { headers: user.headers }), 400, "validation_failed");
    }
  });
});
