// Telemetry off the response path (issue 15, §3 B4): a report is verified, admitted and handed to
// the usage queue on the request, and stored by the queue's consumer. What is queued, what a
// refusal leaves behind (nothing), what a queue failure answers (503, nothing accepted), how
// duplicates are billed and counted, and that a report fits the Queues limits.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { billingUsage } from "../src/db/schema";
import { handleUsageBatch } from "../src/services/metering/usage-queue";
import {
  QUEUE_MESSAGE_MAX_BYTES,
  type TelemetryReportMessage,
  telemetryMetricsEvents,
  telemetryReportMessages,
} from "../src/services/telemetry/enqueue";
import { TELEMETRY_MAX_BATCH_EVENTS, TelemetryEventSchema } from "../src/services/telemetry/event";
import { callWithEnv, recordingQueue } from "./helpers/app";
import { type SeededDeployment, seedDeployment, signTelemetry, telemetryEvent } from "./helpers/deployments";
import { expectProblem, json } from "./helpers/http";
import { drainUsageQueue, storedTelemetryCount } from "./helpers/usage-queue";

const db = createDb(env.DB);

async function send(dep: SeededDeployment, body: string, overrides: Record<string, unknown> = {}, signature?: string) {
  return callWithEnv(overrides, "POST", "/v1/telemetry/report", {
    headers: {
      "content-type": "application/json",
      "x-telemetry-signature": signature ?? (await signTelemetry(dep.secret, body)),
      "x-telemetry-deployment-id": dep.deploymentId,
    },
    rawBody: body,
  });
}

async function billedTelemetryEvents(userId: string): Promise<number> {
  await drainUsageQueue();
  const [row] = await db
    .select({ n: sql<number>`coalesce(sum(${billingUsage.telemetryEvents}), 0)` })
    .from(billingUsage)
    .where(eq(billingUsage.userId, userId));
  return Number(row?.n ?? 0);
}

/** Runs the usage consumer on a batch of these bodies (ids m0, m1, …); what it acked and retried. */
async function runBatch(bodies: unknown[], batchDb = db) {
  const batch = createMessageBatch(
    "usage-events",
    bodies.map((body, i) => ({ id: `m${i}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  await handleUsageBatch(batch, { db: batchDb });
  return getQueueResult(batch, ctx);
}

/** A usage queue whose every send fails, as when the Queues service refuses a write. */
function failingQueue(): Queue & { attempts: number } {
  const queue = {
    attempts: 0,
    async send() {
      queue.attempts++;
      throw new Error("Queue send failed: internal error");
    },
    async sendBatch() {
      queue.attempts++;
      throw new Error("Queue sendBatch failed: internal error");
    },
  };
  return queue as unknown as Queue & { attempts: number };
}

describe("what a report queues", () => {
  it("queues the report as one message, owned by the signing deployment, and answers 202", async () => {
    const dep = await seedDeployment();
    const queue = recordingQueue();
    const events = [telemetryEvent(dep, { usage: { inputTokens: 9 } }), telemetryEvent(dep, { traceId: "tr-q" })];
    const before = Date.now();
    const res = await send(dep, JSON.stringify({ events }), { USAGE_QUEUE: queue });
    expect(res.status).toBe(202);
    expect(await json(res)).toEqual({ accepted: 2, queued: true });
    expect(queue.sent).toHaveLength(1);
    const message = queue.sent[0] as TelemetryReportMessage;
    expect(message).toMatchObject({
      type: "telemetry_report",
      userId: dep.userId,
      agentId: dep.agentId,
      deploymentId: dep.deploymentId,
      events,
    });
    expect(message.receivedAt).toBeGreaterThanOrEqual(before);
    // What the consumer makes of it: one telemetry metrics event per reported event.
    const stored = telemetryMetricsEvents(message);
    expect(stored[0]).toMatchObject({
      source: "telemetry",
      userId: dep.userId,
      dedupeKey: `event:${events[0]!.eventId}`,
      inputTokens: 9,
      outputTokens: null,
      receivedAt: message.receivedAt,
    });
    expect(stored[1]).toMatchObject({ traceId: "tr-q", dedupeKey: `event:${events[1]!.eventId}` });
    // Nothing was written on the request: these went to the stand-in queue, not the real one.
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(0);
  });

  it("queues nothing for a bad signature, a refused event or a rate-limited report", async () => {
    const dep = await seedDeployment();
    const queue = recordingQueue();
    const body = JSON.stringify(telemetryEvent(dep));
    const badSignature = await send(dep, body, { USAGE_QUEUE: queue }, await signTelemetry(new Uint8Array(32), body));
    await expectProblem(badSignature, 401, "invalid_telemetry_signature");
    const late = JSON.stringify(telemetryEvent(dep, { ts: Date.now() - 48 * 3600_000 }));
    expect((await expectProblem(await send(dep, late, { USAGE_QUEUE: queue }), 400, "telemetry_rejected")).check).toBe(
      "event_time",
    );
    const tight = JSON.stringify({ free: { telemetryEventsPerMinute: 100 } });
    const full = JSON.stringify({ events: Array.from({ length: 100 }, () => telemetryEvent(dep)) });
    expect((await send(dep, full, { USAGE_QUEUE: queue, TIER_LIMITS: tight })).status).toBe(202);
    await expectProblem(await send(dep, body, { USAGE_QUEUE: queue, TIER_LIMITS: tight }), 429, "rate_limited");
    // Only the admitted batch reached the queue.
    expect(queue.sent).toHaveLength(1);
    expect((queue.sent[0] as TelemetryReportMessage).events).toEqual(JSON.parse(full).events);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(0);
  });
});

describe("when the queue refuses a report", () => {
  it("answers 503 service_unavailable with Retry-After, stores nothing, and gives the quota back", async () => {
    const dep = await seedDeployment();
    const limits = JSON.stringify({ free: { telemetryEventsPerPeriod: 2 } });
    const body = JSON.stringify({ events: [telemetryEvent(dep), telemetryEvent(dep)] });
    const queue = failingQueue();
    const res = await send(dep, body, { USAGE_QUEUE: queue, TIER_LIMITS: limits });
    const problem = await expectProblem(res, 503, "service_unavailable");
    expect(problem.check).toBe("enqueue");
    expect(problem.detail).toContain("not accepted");
    expect(res.headers.get("retry-after")).toBe("5");
    expect(queue.attempts).toBe(1);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(0);

    // The refused report did not use the quota: retried on a working queue, it fits (2 of 2)…
    const retried = await send(dep, body, { TIER_LIMITS: limits });
    expect(await json(retried)).toEqual({ accepted: 2, queued: true });
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(2);
    // …and the quota is then used up.
    await expectProblem(
      await send(dep, JSON.stringify(telemetryEvent(dep)), { TIER_LIMITS: limits }),
      429,
      "usage_limit_exceeded",
    );
  });

  it("gives the rate limit's tokens back too: the retry of a refused full minute is accepted", async () => {
    const dep = await seedDeployment();
    const limits = JSON.stringify({ free: { telemetryEventsPerMinute: 100 } });
    const body = JSON.stringify({ events: Array.from({ length: 100 }, () => telemetryEvent(dep)) });
    await expectProblem(
      await send(dep, body, { USAGE_QUEUE: failingQueue(), TIER_LIMITS: limits }),
      503,
      "service_unavailable",
    );
    expect(await json(await send(dep, body, { TIER_LIMITS: limits }))).toEqual({ accepted: 100, queued: true });
    await expectProblem(
      await send(dep, JSON.stringify(telemetryEvent(dep)), { TIER_LIMITS: limits }),
      429,
      "rate_limited",
    );
  });

  it("the RPC door refuses with service_unavailable[enqueue]", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep));
    const { TelemetrySink } = await import("../src/entrypoints/telemetry-sink");
    const ctx = createExecutionContext();
    const sink = new TelemetrySink(ctx, { ...env, USAGE_QUEUE: failingQueue() } as typeof env);
    let message = "";
    try {
      await sink.report({ body, signature: await signTelemetry(dep.secret, body), deploymentId: dep.deploymentId });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^service_unavailable\[enqueue\]: the telemetry queue is unavailable/);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(0);
  });
});

describe("duplicates, now dropped by the consumer", () => {
  it("bills a replayed report once, while the replay counts against this isolate's quota", async () => {
    const dep = await seedDeployment();
    const limits = JSON.stringify({ free: { telemetryEventsPerPeriod: 5 } });
    const body = JSON.stringify({ events: [telemetryEvent(dep), telemetryEvent(dep)] });
    expect(await json(await send(dep, body, { TIER_LIMITS: limits }))).toEqual({ accepted: 2, queued: true });
    expect(await json(await send(dep, body, { TIER_LIMITS: limits }))).toEqual({ accepted: 2, queued: true });
    // Stored and billed once…
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(2);
    expect(await billedTelemetryEvents(dep.userId)).toBe(2);
    // …but admitted twice: 4 of 5 used in this isolate, so a report of 2 is refused whole.
    const refused = await expectProblem(
      await send(dep, JSON.stringify({ events: [telemetryEvent(dep), telemetryEvent(dep)] }), { TIER_LIMITS: limits }),
      429,
      "usage_limit_exceeded",
    );
    expect(refused).toMatchObject({ check: "event_quota", max: 5, current: 4 });
    expect((await send(dep, JSON.stringify(telemetryEvent(dep)), { TIER_LIMITS: limits })).status).toBe(202);
    expect(await billedTelemetryEvents(dep.userId)).toBe(3);
  });

  it("the consumer stores a batch's telemetry once, however often it repeats, and drops a poison message", async () => {
    const dep = await seedDeployment();
    const [a, b] = [telemetryEvent(dep), telemetryEvent(dep)].map((e) => TelemetryEventSchema.parse(e));
    const [report] = telemetryReportMessages(dep, [a!, b!], Date.now());
    const [replayOfB] = telemetryReportMessages(dep, [b!], Date.now());
    const bodies: unknown[] = [report, report, { ...report, events: [] }, { type: "telemetry_report" }, replayOfB];
    const result = await runBatch(bodies, db);
    // Every message is settled, the malformed ones included: nothing is retried forever.
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks.sort()).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(2);
    expect(await billedTelemetryEvents(dep.userId)).toBe(2);
  });
});

describe("the consumer's writes", () => {
  async function fullReports(dep: SeededDeployment, n: number) {
    return Array.from({ length: n }, () => {
      const events = Array.from({ length: 100 }, () => TelemetryEventSchema.parse(telemetryEvent(dep)));
      return telemetryReportMessages(dep, events, Date.now())[0];
    });
  }

  it("writes a batch in chunks of at most 100 events: one per full report, small messages together", async () => {
    const dep = await seedDeployment();
    const writes: number[] = [];
    const counting = createDb({
      prepare: env.DB.prepare.bind(env.DB),
      batch: async (statements: D1PreparedStatement[]) => {
        writes.push(statements.length);
        return env.DB.batch(statements);
      },
    } as unknown as D1Database);
    const small = (n: number) =>
      telemetryReportMessages(
        dep,
        Array.from({ length: n }, () => TelemetryEventSchema.parse(telemetryEvent(dep))),
        Date.now(),
      )[0];
    const bodies = [...(await fullReports(dep, 3)), small(40), small(60), small(1)];
    const result = await runBatch(bodies, counting);
    expect(result.explicitAcks).toHaveLength(6);
    // 100, 100, 100, then 40 + 60 together, then 1: three or four statements each.
    expect(writes).toHaveLength(5);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(401);
    expect(await billedTelemetryEvents(dep.userId)).toBe(401);
  });

  it("keeps the chunks written when a later one fails, and retries only the messages not stored", async () => {
    const dep = await seedDeployment();
    let calls = 0;
    const failingSecond = createDb({
      prepare: env.DB.prepare.bind(env.DB),
      batch: async (statements: D1PreparedStatement[]) => {
        if (++calls === 2) throw new Error("D1_ERROR: Network connection lost.");
        return env.DB.batch(statements);
      },
    } as unknown as D1Database);
    const result = await runBatch(await fullReports(dep, 4), failingSecond);
    expect(calls).toBe(2); // the third chunk is not tried against a failing D1
    expect(result.explicitAcks).toEqual(["m0"]);
    expect(result.retryMessages.map((m) => m.msgId).sort()).toEqual(["m1", "m2", "m3"]);
    expect(await storedTelemetryCount(dep.deploymentId)).toBe(100);
  });
});

describe("Queues limits", () => {
  it("sends even 100 events of maximal size as one message under the 128 KB limit", async () => {
    const dep = await seedDeployment();
    const longId = "~".repeat(128);
    const events = Array.from({ length: TELEMETRY_MAX_BATCH_EVENTS }, (_, i) =>
      TelemetryEventSchema.parse(
        telemetryEvent(dep, {
          eventId: `${i}${longId}`.slice(0, 128),
          traceId: longId,
          errorCode: "é".repeat(64),
          usage: { inputTokens: 10_000_000, outputTokens: 10_000_000 },
          durationMs: 86_400_000,
          status: "error",
        }),
      ),
    );
    const messages = telemetryReportMessages(dep, events, Date.now());
    expect(messages).toHaveLength(1);
    expect(new TextEncoder().encode(JSON.stringify(messages[0])).byteLength).toBeLessThan(QUEUE_MESSAGE_MAX_BYTES);
  });

  it("splits a report whose message would exceed the limit into several, keeping every event in order", async () => {
    const dep = await seedDeployment();
    const events = Array.from({ length: 10 }, () => TelemetryEventSchema.parse(telemetryEvent(dep)));
    const one = JSON.stringify(telemetryReportMessages(dep, events, 1)[0]).length;
    const messages = telemetryReportMessages(dep, events, 1, one); // too small for all ten plus the margin
    expect(messages.length).toBeGreaterThan(1);
    expect(messages.flatMap((m) => m.events)).toEqual(events);
    for (const m of messages) expect(m).toMatchObject({ deploymentId: dep.deploymentId, receivedAt: 1 });
    expect(() => telemetryReportMessages(dep, events.slice(0, 1), 1, 100)).toThrow(/exceeds the queue's message limit/);
  });
});
