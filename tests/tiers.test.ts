import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { lookupUserSql, tierChangeStatements } from "../scripts/lib/tier-sql.ts";
import { parseKeyring } from "../src/crypto/keys";
import { subscriptions } from "../src/db/schema";
import { getConfig } from "../src/env";
import { ApiError } from "../src/lib/errors";
import { newId } from "../src/lib/ids";
import { assertDeployAllowed, deploysToday } from "../src/services/usage/plan-limits";
import { DEFAULT_TIER_LIMITS, parseTierLimits } from "../src/services/usage/tiers";
import { getUserTier, readUserTier, setUserTier, TIER_CACHE_TTL_MS } from "../src/services/usage/user-tier";
import { callWithEnv } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { envWith } from "./helpers/env-override";
import { db, insertDeployment, insertUserAndAgent, setTierOf, userIdOf } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";

async function createAgentRes(headers: Record<string, string>, name = `a-${crypto.randomUUID().slice(0, 8)}`) {
  return call("POST", "/v1/agents", { headers, body: { name } });
}

describe("TIER_LIMITS overrides", () => {
  it("keeps every default when unset or blank", () => {
    expect(parseTierLimits(undefined)).toEqual(DEFAULT_TIER_LIMITS);
    expect(parseTierLimits("  ")).toEqual(DEFAULT_TIER_LIMITS);
    expect(DEFAULT_TIER_LIMITS.free).toEqual({
      invocationsPerPeriod: 1000,
      agents: 3,
      deploysPerDay: 50,
      cpuMs: 50,
      subRequests: 50,
      invokeBodyBytes: 1048576,
      streamSeconds: 300,
      telemetryEventsPerMinute: 600,
      telemetryEventsPerPeriod: 10_000,
      metricsRetentionDays: 7,
      bundleBytes: 3145728,
      modelTokensPerPeriod: 100_000,
      egressRequestsPerInvocation: 50,
      sessionIdleSeconds: 3600,
      logLines: 1_000,
      logRetentionHours: 24,
      logLinesPerSecond: 50,
    });
  });

  it("overrides only the tiers and keys it names", async () => {
    const config = await getConfig(
      envWith({ TIER_LIMITS: JSON.stringify({ free: { agents: 7, cpuMs: 20 }, enterprise: {} }) }),
    );
    expect(config.tierLimits.free).toEqual({ ...DEFAULT_TIER_LIMITS.free, agents: 7, cpuMs: 20 });
    expect(config.tierLimits.pro).toEqual(DEFAULT_TIER_LIMITS.pro);
    expect(config.tierLimits.enterprise).toEqual(DEFAULT_TIER_LIMITS.enterprise);
  });

  const invalid: Array<[string, string, RegExp]> = [
    ["zero", '{"free":{"agents":0}}', /TIER_LIMITS\.free\.agents: must be a positive integer/],
    ["negative", '{"pro":{"cpuMs":-5}}', /TIER_LIMITS\.pro\.cpuMs: must be a positive integer/],
    ["fractional", '{"free":{"deploysPerDay":1.5}}', /TIER_LIMITS\.free\.deploysPerDay: must be an integer/],
    ["a string number", '{"free":{"agents":"3"}}', /TIER_LIMITS\.free\.agents: must be a number/],
    ["null", '{"free":{"agents":null}}', /TIER_LIMITS\.free\.agents/],
    ["unknown tier", '{"gold":{"agents":3}}', /unknown tier gold/],
    ["unknown key", '{"free":{"agentz":3}}', /TIER_LIMITS\.free: unknown limit agentz/],
    ["not JSON", "{free: 1}", /not valid JSON/],
    ["not an object", "[1,2]", /TIER_LIMITS/],
    [
      "above what the runtime enforces",
      '{"enterprise":{"cpuMs":300001}}',
      /TIER_LIMITS\.enterprise\.cpuMs: must be at most 300000/,
    ],
    [
      "a stream limit above a day",
      '{"pro":{"streamSeconds":86401}}',
      /TIER_LIMITS\.pro\.streamSeconds: must be at most 86400/,
    ],
    [
      "a session idle TTL above 30 days",
      '{"free":{"sessionIdleSeconds":2592001}}',
      /TIER_LIMITS\.free\.sessionIdleSeconds: must be at most 2592000/,
    ],
    [
      "a log retention above a week",
      '{"pro":{"logRetentionHours":169}}',
      /TIER_LIMITS\.pro\.logRetentionHours: must be at most 168/,
    ],
    ["beyond safe integers", '{"free":{"invocationsPerPeriod":1e300}}', /TIER_LIMITS\.free\.invocationsPerPeriod/],
  ];

  for (const [label, raw, message] of invalid) {
    it(`refuses to serve with a configuration_error when a value is ${label}`, async () => {
      expect(() => parseTierLimits(raw)).toThrow(message);
      const { headers } = await newUser();
      await expectProblem(
        await callWithEnv({ TIER_LIMITS: raw }, "GET", "/v1/agents", { headers }),
        500,
        "configuration_error",
      );
      await expectProblem(await callWithEnv({ TIER_LIMITS: raw }, "GET", "/healthz"), 500, "configuration_error");
    });
  }

  it("serves normally with a valid override and applies it", async () => {
    const user = await newUser();
    const limits = { TIER_LIMITS: '{"free":{"agents":1}}' };
    const first = await callWithEnv(limits, "POST", "/v1/agents", { headers: user.headers, body: { name: "one" } });
    expect(first.status).toBe(201);
    const second = await callWithEnv(limits, "POST", "/v1/agents", { headers: user.headers, body: { name: "two" } });
    const problem = await expectProblem(second, 403, "plan_limit_exceeded");
    expect(problem).toMatchObject({ limit: "agents", tier: "free", max: 1, current: 1 });
    // The same user under the default limits (3) may create a second agent.
    expect((await createAgentRes(user.headers)).status).toBe(201);
  });
});

describe("getUserTier", () => {
  it("is free without a subscription and follows the active subscription", async () => {
    const { userId } = await insertUserAndAgent();
    expect(await getUserTier(db, userId)).toBe("free");
    expect(await setUserTier(db, { userId, tier: "pro", actor: "operator:test" })).toEqual({
      previousTier: "free",
      tier: "pro",
    });
    expect(await getUserTier(db, userId)).toBe("pro");
    await setUserTier(db, { userId, tier: "enterprise", actor: "operator:test" });
    expect(await getUserTier(db, userId)).toBe("enterprise");
    const rows = await db.select().from(subscriptions).all();
    const mine = rows.filter((r) => r.userId === userId);
    expect(mine.filter((r) => r.status === "active").map((r) => r.tier)).toEqual(["enterprise"]);
    expect(mine).toHaveLength(2);
  });

  it("treats a canceled subscription as free", async () => {
    const { userId } = await insertUserAndAgent();
    const now = Date.now();
    await db
      .insert(subscriptions)
      .values({ id: newId("subscription"), userId, tier: "pro", status: "canceled", createdAt: now, updatedAt: now });
    expect(await readUserTier(db, userId)).toBe("free");
  });

  it(`trusts a cached tier for ${TIER_CACHE_TTL_MS / 1000} s, then rereads it`, async () => {
    const { userId } = await insertUserAndAgent();
    const t0 = Date.now();
    expect(await getUserTier(db, userId, { now: t0 })).toBe("free");
    // Another isolate (here: a direct write) upgrades the user.
    await db
      .insert(subscriptions)
      .values({ id: newId("subscription"), userId, tier: "pro", status: "active", createdAt: t0, updatedAt: t0 });
    expect(await getUserTier(db, userId, { now: t0 + TIER_CACHE_TTL_MS - 1 })).toBe("free");
    expect(await getUserTier(db, userId, { now: t0 + TIER_CACHE_TTL_MS })).toBe("pro");
  });
});

describe("npm run set-tier (its SQL, run against D1)", () => {
  it("moves a user by id or by auth subject and writes an audit entry", async () => {
    const user = await newUser("tiered");
    const userId = await userIdOf(user);
    const t0 = Date.now();
    for (const stmt of tierChangeStatements({ user: userId, tier: "pro", now: t0 })) await env.DB.prepare(stmt).run();
    expect(await readUserTier(db, userId)).toBe("pro");
    for (const stmt of tierChangeStatements({ user: user.subject, tier: "enterprise", now: t0 + 1 }))
      await env.DB.prepare(stmt).run();
    expect(await readUserTier(db, userId)).toBe("enterprise");
    const lookup = await env.DB.prepare(lookupUserSql(user.subject)).all();
    expect(lookup.results).toEqual([{ id: userId, tier: "enterprise" }]);

    const audit = await json(await call("GET", "/v1/audit", { headers: user.headers }));
    expect(audit.entries.map((e: any) => [e.action, e.actor, e.targetId, e.details])).toEqual([
      ["tier.changed", "operator:set-tier", userId, { tier: "enterprise", previousTier: "pro" }],
      ["tier.changed", "operator:set-tier", userId, { tier: "pro", previousTier: "free" }],
    ]);
  });

  it("quotes hostile input and changes nothing for an unknown user", async () => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM subscriptions").first<{ n: number }>();
    const subject = "x'); DELETE FROM subscriptions; --";
    for (const stmt of tierChangeStatements({ user: subject, tier: "pro" })) await env.DB.prepare(stmt).run();
    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM subscriptions").first<{ n: number }>();
    expect(after?.n).toBe(before?.n);
    expect(() => tierChangeStatements({ user: "usr_x", tier: "gold" })).toThrow(/tier must be one of/);
    expect(() => tierChangeStatements({ user: "a\nb", tier: "pro" })).toThrow(/control character/);
  });
});

describe("agent count limit", () => {
  it("answers the agent beyond the tier's count with a 403 naming the limit, value and count", async () => {
    const { headers } = await newUser();
    for (let i = 0; i < DEFAULT_TIER_LIMITS.free.agents; i++) expect((await createAgentRes(headers)).status).toBe(201);
    const res = await createAgentRes(headers, "one-too-many");
    const problem = await expectProblem(res, 403, "plan_limit_exceeded");
    expect(problem).toMatchObject({
      type: "https://webhost.systems/problems/plan-limit-exceeded",
      status: 403,
      limit: "agents",
      tier: "free",
      max: 3,
      current: 3,
    });
    expect(problem.detail).toMatch(/free plan allows 3 agents/);
    const list = await json(await call("GET", "/v1/agents", { headers }));
    expect(list.agents.map((a: any) => a.name)).not.toContain("one-too-many");
  });

  it("counts live agents only: deleting one frees a slot; disabled ones still count", async () => {
    const { headers } = await newUser();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await json(await createAgentRes(headers))).agent.id);
    await call("POST", `/v1/agents/${ids[0]}/disable`, { headers });
    await expectProblem(await createAgentRes(headers), 403, "plan_limit_exceeded");
    await call("DELETE", `/v1/agents/${ids[1]}`, { headers });
    expect((await createAgentRes(headers)).status).toBe(201);
  });

  it("never lets concurrent creates overshoot the limit", async () => {
    const { headers } = await newUser();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => createAgentRes(headers, `race-${i}`)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(3);
    expect(results.filter((r) => r.status === 403)).toHaveLength(5);
    expect((await json(await call("GET", "/v1/agents", { headers }))).agents).toHaveLength(3);
  });

  it("follows the user's tier", async () => {
    const user = await newUser();
    await setTierOf(user, "pro");
    for (let i = 0; i < 4; i++) expect((await createAgentRes(user.headers)).status).toBe(201);
  });
});

describe("deploys per day", () => {
  const limits = { ...DEFAULT_TIER_LIMITS, free: { ...DEFAULT_TIER_LIMITS.free, deploysPerDay: 2 } };

  it("counts the user's deployments since 00:00 UTC", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    const other = await insertUserAndAgent();
    const now = Date.UTC(2031, 4, 10, 12, 0, 0);
    await insertDeployment({ userId, agentId, createdAt: Date.UTC(2031, 4, 9, 23, 59, 59, 999) });
    await insertDeployment({ userId, agentId, createdAt: Date.UTC(2031, 4, 10, 0, 0, 0) });
    await insertDeployment({ ...other, createdAt: Date.UTC(2031, 4, 10, 1, 0, 0) });
    expect(await deploysToday(db, userId, now)).toBe(1);
    expect(await deploysToday(db, other.userId, now)).toBe(1);
  });

  it("allows deploys below the limit and refuses the one at the limit with a 403 naming it", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    const now = Date.UTC(2031, 5, 1, 8, 0, 0);
    await insertDeployment({ userId, agentId, createdAt: now - 1000 });
    expect(await assertDeployAllowed({ db, userId, tierLimits: limits }, { now })).toEqual({
      tier: "free",
      max: 2,
      current: 1,
    });
    await insertDeployment({ userId, agentId, createdAt: now - 500 });
    let thrown: unknown;
    try {
      await assertDeployAllowed({ db, userId, tierLimits: limits }, { now });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ApiError);
    const err = thrown as ApiError;
    expect(err.code).toBe("plan_limit_exceeded");
    expect(err.status).toBe(403);
    expect(err.extra).toEqual({
      limit: "deploysPerDay",
      tier: "free",
      max: 2,
      current: 2,
      resetsAt: "2031-06-02T00:00:00.000Z",
    });
    // The next UTC day starts from zero.
    const tomorrow = Date.UTC(2031, 5, 2, 0, 0, 1);
    expect((await assertDeployAllowed({ db, userId, tierLimits: limits }, { now: tomorrow })).current).toBe(0);
  });

  it("uses the user's tier limit", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    await setUserTier(db, { userId, tier: "pro", actor: "operator:test" });
    const now = Date.UTC(2031, 6, 1, 8, 0, 0);
    for (let i = 0; i < 3; i++) await insertDeployment({ userId, agentId, createdAt: now - 100 * (i + 1) });
    expect(await assertDeployAllowed({ db, userId, tierLimits: limits }, { now })).toMatchObject({
      tier: "pro",
      max: DEFAULT_TIER_LIMITS.pro.deploysPerDay,
      current: 3,
    });
  });
});

// Keeps the keyring import honest: the config's keyring is what the services receive.
it("exposes the keyring and tier limits on the parsed config", async () => {
  const config = await getConfig(env);
  const ring = await parseKeyring(env.SECRETS_ENCRYPTION_KEY ?? "");
  expect(config.keyring.current.id).toBe(ring.current.id);
  expect(config.tierLimits).toEqual(DEFAULT_TIER_LIMITS);
});
