import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { billingUsage } from "../src/db/schema";
import { newId } from "../src/lib/ids";
import type { MetricsEvent } from "../src/services/metering/event";
import { DEAD_LETTER_ATTEMPTS, handleUsageBatch } from "../src/services/metering/usage-queue";
import { gatewayEvent } from "./helpers/metrics-events";

function measurement(userId: string): MetricsEvent {
  return gatewayEvent(userId, "agt_q", { deploymentId: "dep_q", durationMs: 5, bytesIn: 10, bytesOut: 20 });
}

async function runBatch(bodies: unknown[], batchEnv = env, opts: { deadLetter?: boolean; attempts?: number } = {}) {
  const batch = createMessageBatch(
    "usage-events",
    bodies.map((body, i) => ({ id: `m${i}`, timestamp: new Date(), attempts: opts.attempts ?? 1, body })),
  );
  const ctx = createExecutionContext();
  await handleUsageBatch(batch, { db: createDb(batchEnv.DB) }, opts);
  return getQueueResult(batch, ctx);
}

describe("usage queue consumer", () => {
  it("meters a batch, acks every message, and drops malformed ones without retrying", async () => {
    const userId = newId("user");
    const result = await runBatch([measurement(userId), { nope: true }, measurement(userId), "garbage"]);
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks.sort()).toEqual(["m0", "m1", "m2", "m3"]);
    const [row] = await createDb(env.DB).select().from(billingUsage).where(eq(billingUsage.userId, userId));
    expect(row?.requests).toBe(2);
  });

  it("retries the valid messages with backoff when D1 fails, and writes nothing", async () => {
    const userId = newId("user");
    const failingDb = {
      prepare: env.DB.prepare.bind(env.DB),
      batch: async () => {
        throw new Error("D1_ERROR: Network connection lost.");
      },
    } as unknown as D1Database;
    const result = await runBatch([measurement(userId), { bad: 1 }], { ...env, DB: failingDb });
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["m0"]);
    expect(result.explicitAcks).toEqual(["m1"]);
    const rows = await createDb(env.DB).select().from(billingUsage).where(eq(billingUsage.userId, userId));
    expect(rows).toEqual([]);
  });

  it("keeps retrying dead-lettered events while D1 fails, and gives them up on the last delivery", async () => {
    const failingDb = {
      prepare: env.DB.prepare.bind(env.DB),
      batch: async () => {
        throw new Error("D1_ERROR: Network connection lost.");
      },
    } as unknown as D1Database;
    const early = await runBatch([measurement(newId("user"))], { ...env, DB: failingDb }, { deadLetter: true });
    expect(early.retryMessages.map((m) => m.msgId)).toEqual(["m0"]);
    expect(early.explicitAcks).toEqual([]);
    const last = await runBatch(
      [measurement(newId("user"))],
      { ...env, DB: failingDb },
      {
        deadLetter: true,
        attempts: DEAD_LETTER_ATTEMPTS,
      },
    );
    expect(last.retryMessages).toEqual([]);
    expect(last.explicitAcks).toEqual(["m0"]);
  });

  it("meters dead-lettered messages when D1 is back", async () => {
    const userId = newId("user");
    const result = await runBatch([measurement(userId)], env, { deadLetter: true });
    expect(result.explicitAcks).toEqual(["m0"]);
    const [row] = await createDb(env.DB).select().from(billingUsage).where(eq(billingUsage.userId, userId));
    expect(row?.requests).toBe(1);
  });
});
