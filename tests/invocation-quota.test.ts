// The invocation quota under concurrency (src/services/usage/invocation-quota.ts): requests that
// find a user's count missing or due for refresh share one D1 read, and every admission lands on
// the one shared count, so a burst can never spend the same last invocation twice.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { billingUsage } from "../src/db/schema";
import worker from "../src/index";
import { newId } from "../src/lib/ids";
import { periodKeyOf } from "../src/lib/time";
import { admitInvocation, QUOTA_REFRESH_MS } from "../src/services/usage/invocation-quota";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { db, insertUserAndAgent, userIdOf } from "./helpers/fixtures";

/** `requests` invocations of `userId` already metered in D1 for the period containing `now`. */
async function meteredAlready(userId: string, agentId: string, requests: number, now: number) {
  await db
    .insert(billingUsage)
    .values({ id: newId("usage"), userId, periodKey: periodKeyOf(now), agentId, requests, updatedAt: now });
}

describe("invocation quota: concurrent admissions share one count", () => {
  it("admits exactly 1 of 20 concurrent admissions when 1 invocation is left and nothing is cached", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    const now = Date.UTC(2032, 2, 10);
    await meteredAlready(userId, agentId, 4, now);
    const decisions = await Promise.all(
      Array.from({ length: 20 }, () => admitInvocation(db, { userId, limit: 5, now })),
    );
    expect(decisions.filter((d) => d.allowed)).toHaveLength(1);
    expect(decisions.find((d) => d.allowed)?.remaining).toBe(0);
  });

  it("admits exactly 1 of 20 concurrent admissions when 1 is left and the count is due for refresh", async () => {
    const { userId, agentId } = await insertUserAndAgent();
    const now = Date.UTC(2032, 3, 10);
    await meteredAlready(userId, agentId, 3, now);
    expect(await admitInvocation(db, { userId, limit: 5, now })).toMatchObject({ allowed: true, remaining: 1 });
    // D1 still says 3 (the admission above is not metered yet): the refresh keeps the local 4.
    const later = now + QUOTA_REFRESH_MS;
    const decisions = await Promise.all(
      Array.from({ length: 20 }, () => admitInvocation(db, { userId, limit: 5, now: later })),
    );
    expect(decisions.filter((d) => d.allowed)).toHaveLength(1);
    // No admission was lost to a refresh: neither this isolate's next call nor the next refresh admits.
    expect((await admitInvocation(db, { userId, limit: 5, now: later + 1 })).allowed).toBe(false);
    expect((await admitInvocation(db, { userId, limit: 5, now: later + QUOTA_REFRESH_MS })).allowed).toBe(false);
  });

  it("answers 20 concurrent POST /v1/invoke with 1 invocation left with exactly one 200 and nineteen 429s", async () => {
    const user = await newUser("quota-burst");
    const agent = await createAgent(user.headers);
    await deployAndActivate(user.headers, agent.id);
    const userId = await userIdOf(user);
    await meteredAlready(userId, agent.id, 4, Date.now());
    const limited = { ...env, TIER_LIMITS: JSON.stringify({ free: { invocationsPerPeriod: 5 } }) };
    const responses = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const ctx = createExecutionContext();
        Object.assign(ctx, { exports });
        const res = await worker.fetch(
          new Request(`http://gateway.test/v1/invoke/${agent.id}`, {
            method: "POST",
            headers: { ...user.headers, "content-type": "application/json" },
            body: JSON.stringify(userMessage(`burst ${i}`)),
          }),
          limited,
          ctx,
        );
        await res.arrayBuffer();
        await waitOnExecutionContext(ctx);
        return res.status;
      }),
    );
    expect(responses.filter((s) => s === 200)).toHaveLength(1);
    expect(responses.filter((s) => s === 429)).toHaveLength(19);
  });
});
