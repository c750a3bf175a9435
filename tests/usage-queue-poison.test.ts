// A poisoned message in a usage batch: one message whose row D1 deterministically refuses fails
// its whole chunk's transaction. The consumer then writes the chunk one message at a time, so the
// good messages are stored, billed and acknowledged and only the poisoned one is retried — while
// a D1 that fails every write still retries everything, after at most one extra pass.
// The poison is a real SQLite trigger in the real (miniflare) D1 (tests/helpers/d1-faults.ts).
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createDb } from "../src/db/client";
import { backoffSeconds } from "../src/lib/backoff";
import { newId } from "../src/lib/ids";
import type { MetricsEvent } from "../src/services/metering/event";
import {
  DEAD_LETTER_ATTEMPTS,
  DEAD_LETTER_RETRY,
  handleUsageBatch,
  USAGE_RETRY,
} from "../src/services/metering/usage-queue";
import { telemetryReportMessages } from "../src/services/telemetry/enqueue";
import { TelemetryEventSchema } from "../src/services/telemetry/event";
import { faultyD1, withFailingWrites } from "./helpers/d1-faults";
import { seedDeployment, telemetryEvent } from "./helpers/deployments";
import { gatewayEvent } from "./helpers/metrics-events";
import { handMadeBatch } from "./helpers/queue-batch";

/** `real` with every D1 batch (one consumer write) counted; `throwOn(n)` may fail the n-th. */
function countingD1(real: D1Database = env.DB, throwOn?: (n: number, run: () => Promise<unknown>) => Promise<void>) {
  const d1 = {
    writes: 0,
    prepare: (sql: string) => real.prepare(sql),
    batch: async (statements: D1PreparedStatement[]) => {
      const n = ++d1.writes;
      if (throwOn) await throwOn(n, () => real.batch(statements));
      return real.batch(statements);
    },
  };
  return d1 as unknown as D1Database & { writes: number };
}

/** One invocation measured by the gateway for this user and agent (10 bytes in, 20 out, 5 ms). */
function measurement(userId: string, agentId: string, overrides: Partial<MetricsEvent> = {}): MetricsEvent {
  return gatewayEvent(userId, agentId, {
    deploymentId: "dep_poison",
    durationMs: 5,
    bytesIn: 10,
    bytesOut: 20,
    ...overrides,
  });
}

async function stored(userId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM metrics_events WHERE user_id = ?")
    .bind(userId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** The user's billing_usage, summed over periods and agents. */
async function billed(userId: string) {
  return env.DB.prepare(
    `SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(bytes_in), 0) AS bytesIn,
       COALESCE(SUM(bytes_out), 0) AS bytesOut, COALESCE(SUM(duration_ms_total), 0) AS durationMs,
       COALESCE(SUM(input_tokens), 0) AS inputTokens, COALESCE(SUM(telemetry_events), 0) AS telemetryEvents
     FROM billing_usage WHERE user_id = ?`,
  )
    .bind(userId)
    .first<Record<string, number>>();
}

/** Invocations the per-agent stats counted, in minute buckets. */
async function statsInvocations(agentId: string): Promise<number> {
  const row = await env.DB.prepare(
    "SELECT COALESCE(SUM(invocations), 0) AS n FROM agent_stats WHERE agent_id = ? AND bucket_ms = 60000",
  )
    .bind(agentId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

let logged: string[] = [];
beforeEach(() => {
  logged = [];
  vi.spyOn(console, "error").mockImplementation((line: unknown) => void logged.push(String(line)));
  vi.spyOn(console, "warn").mockImplementation(() => {});
});
afterEach(() => {
  vi.restoreAllMocks();
});
const logLines = (event: string) => logged.map((l) => JSON.parse(l)).filter((l) => l.event === event);

describe("a poisoned message in a usage batch", () => {
  it("stores, bills and acks the good messages and retries only the poisoned one with backoff, naming it once", async () => {
    const userId = newId("user");
    const agentId = newId("agent");
    const good = Array.from({ length: 5 }, () => measurement(userId, agentId));
    const poison = measurement(userId, agentId);
    const bodies = [good[0], good[1], poison, good[2], good[3], good[4]];
    const d1 = countingD1();
    const { batch, outcomes, settled, ids } = handMadeBatch("usage-events", bodies, 3);

    await withFailingWrites(
      { table: "metrics_events", on: "INSERT", when: `NEW.dedupe_key = '${poison.dedupeKey}'` },
      () => handleUsageBatch(batch, { db: createDb(d1) }),
    );

    const expected = bodies.map((b) => (b === poison ? { op: "retry", delaySeconds: 8 } : { op: "ack" }));
    expect(ids.map((id) => outcomes.get(id))).toEqual(expected);
    expect(backoffSeconds(3, USAGE_RETRY)).toBe(8);
    expect(settled).toHaveLength(6); // each message settled exactly once
    // One write of the chunk, then the one extra pass: each of its six messages alone.
    expect(d1.writes).toBe(7);

    expect(await stored(userId)).toBe(5);
    expect(await billed(userId)).toMatchObject({ requests: 5, bytesIn: 50, bytesOut: 100, durationMs: 25 });
    expect(await statsInvocations(agentId)).toBe(5);

    const rejected = logLines("usage_message_rejected");
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({
      queue: "usage-events",
      messageId: ids[2],
      attempts: 3,
      deploymentId: "dep_poison",
      source: "gateway",
      events: 1,
    });
    expect(rejected[0].error).toContain("injected failure");
    // Its identity only, none of its content.
    expect(JSON.stringify(rejected[0])).not.toContain(poison.id);
    expect(JSON.stringify(rejected[0])).not.toContain(userId);
    expect(logLines("usage_batch_failed")).toEqual([]);
  });

  it("counts nothing twice: the retried poison lands once D1 takes it, with the good ones delivered again", async () => {
    const userId = newId("user");
    const agentId = newId("agent");
    const good = [measurement(userId, agentId), measurement(userId, agentId)];
    const poison = measurement(userId, agentId, { durationMs: 7 });
    const first = handMadeBatch("usage-events", [good[0], poison, good[1]], 1);
    await withFailingWrites(
      { table: "metrics_events", on: "INSERT", when: `NEW.dedupe_key = '${poison.dedupeKey}'` },
      () => handleUsageBatch(first.batch, { db: createDb(env.DB) }),
    );
    expect(first.ids.map((id) => first.outcomes.get(id)?.op)).toEqual(["ack", "retry", "ack"]);
    expect(await billed(userId)).toMatchObject({ requests: 2, durationMs: 10 });

    // At-least-once delivery: the good ones come again with the poison, now accepted.
    const again = handMadeBatch("usage-events", [good[0], poison, good[1]], 2);
    await handleUsageBatch(again.batch, { db: createDb(env.DB) });
    expect([...again.outcomes.values()].map((o) => o.op)).toEqual(["ack", "ack", "ack"]);
    expect(await stored(userId)).toBe(3);
    expect(await billed(userId)).toMatchObject({ requests: 3, bytesIn: 30, bytesOut: 60, durationMs: 17 });
    expect(await statsInvocations(agentId)).toBe(3);
  });

  it("retries a telemetry report whole when one of its events is poisoned, and bills the other reports' tokens", async () => {
    const dep = await seedDeployment();
    const report = (n: number) =>
      telemetryReportMessages(
        dep,
        Array.from({ length: n }, () =>
          TelemetryEventSchema.parse(telemetryEvent(dep, { usage: { inputTokens: 4, outputTokens: 1 } })),
        ),
        Date.now(),
      )[0];
    const reports = [report(3), report(2), report(3)];
    const poisonedEventId = reports[1]!.events[1]!.eventId;
    const { batch, outcomes, ids } = handMadeBatch("usage-events", reports, 1);
    await withFailingWrites(
      { table: "metrics_events", on: "INSERT", when: `NEW.dedupe_key = 'event:${poisonedEventId}'` },
      () => handleUsageBatch(batch, { db: createDb(env.DB) }),
    );
    expect(ids.map((id) => outcomes.get(id))).toEqual([
      { op: "ack" },
      { op: "retry", delaySeconds: backoffSeconds(1, USAGE_RETRY) },
      { op: "ack" },
    ]);
    expect(await stored(dep.userId)).toBe(6);
    expect(await billed(dep.userId)).toMatchObject({ telemetryEvents: 6, inputTokens: 24 });
    expect(logLines("usage_message_rejected")).toMatchObject([
      { messageId: ids[1], deploymentId: dep.deploymentId, source: "telemetry", events: 2 },
    ]);
    expect(logged.join("\n")).not.toContain(poisonedEventId);
  });

  it("goes on after a one-message chunk D1 refuses: the full reports after it are stored", async () => {
    const dep = await seedDeployment();
    const fullReport = () =>
      telemetryReportMessages(
        dep,
        Array.from({ length: 100 }, () => TelemetryEventSchema.parse(telemetryEvent(dep))),
        Date.now(),
      )[0];
    const reports = [fullReport(), fullReport(), fullReport()];
    const d1 = countingD1();
    const { batch, outcomes, ids } = handMadeBatch("usage-events", reports, 1);
    await withFailingWrites(
      { table: "metrics_events", on: "INSERT", when: `NEW.dedupe_key = 'event:${reports[0]!.events[42]!.eventId}'` },
      () => handleUsageBatch(batch, { db: createDb(d1) }),
    );
    expect(ids.map((id) => outcomes.get(id)?.op)).toEqual(["retry", "ack", "ack"]);
    expect(d1.writes).toBe(3); // each report is its own chunk: nothing to isolate, no extra pass
    expect(await stored(dep.userId)).toBe(200);
  });

  it("on its last dead-letter delivery gives up only the poisoned message; the rest of the batch is stored", async () => {
    const userId = newId("user");
    const agentId = newId("agent");
    const poison = measurement(userId, agentId);
    const trigger = { table: "metrics_events", on: "INSERT" as const, when: `NEW.dedupe_key = '${poison.dedupeKey}'` };

    const early = handMadeBatch("usage-events-dlq", [measurement(userId, agentId), poison], 2);
    await withFailingWrites(trigger, () =>
      handleUsageBatch(early.batch, { db: createDb(env.DB) }, { deadLetter: true }),
    );
    expect(early.ids.map((id) => early.outcomes.get(id))).toEqual([
      { op: "ack" },
      { op: "retry", delaySeconds: backoffSeconds(2, DEAD_LETTER_RETRY) },
    ]);

    const last = handMadeBatch("usage-events-dlq", [poison, measurement(userId, agentId)], DEAD_LETTER_ATTEMPTS);
    await withFailingWrites(trigger, () =>
      handleUsageBatch(last.batch, { db: createDb(env.DB) }, { deadLetter: true }),
    );
    expect(last.ids.map((id) => last.outcomes.get(id)?.op)).toEqual(["ack", "ack"]);
    expect(await stored(userId)).toBe(2);
    expect(logLines("usage_events_lost")).toMatchObject([{ messageId: last.ids[0], lost: 1, lostEvents: 1 }]);
  });
});

describe("a D1 that fails every write", () => {
  it("outage: retries every message and asks D1 once, not once per message", async () => {
    const userId = newId("user");
    const dep = await seedDeployment();
    const bodies = [
      ...Array.from({ length: 4 }, () => measurement(userId, "agt_outage")),
      telemetryReportMessages(dep, [TelemetryEventSchema.parse(telemetryEvent(dep))], Date.now())[0],
    ];
    const d1 = countingD1(faultyD1());
    const { batch, outcomes } = handMadeBatch("usage-events", bodies, 1);
    await handleUsageBatch(batch, { db: createDb(d1) });
    expect([...outcomes.values()]).toEqual(bodies.map(() => ({ op: "retry", delaySeconds: 2 })));
    expect(d1.writes).toBe(1);
    expect(logLines("usage_batch_failed")).toMatchObject([{ count: 5, events: 5 }]);
    expect(logLines("usage_message_rejected")).toEqual([]);
  });

  it("an error that does not say outage: retries every message after one extra pass of the first chunk, and tries no later chunk", async () => {
    const userId = newId("user");
    const dep = await seedDeployment();
    const fullReport = telemetryReportMessages(
      dep,
      Array.from({ length: 100 }, () => TelemetryEventSchema.parse(telemetryEvent(dep))),
      Date.now(),
    )[0];
    // Chunks: the three measurements, then the full report.
    const bodies = [
      measurement(userId, "agt_x"),
      measurement(userId, "agt_x"),
      measurement(userId, "agt_x"),
      fullReport,
    ];
    const d1 = countingD1(env.DB, async () => {
      throw new Error("D1_ERROR: something unexpected");
    });
    const { batch, outcomes } = handMadeBatch("usage-events", bodies, 1);
    await handleUsageBatch(batch, { db: createDb(d1) });
    expect([...outcomes.values()].map((o) => o.op)).toEqual(["retry", "retry", "retry", "retry"]);
    expect(d1.writes).toBe(1 + 3);
    expect(logLines("usage_batch_failed")).toMatchObject([{ count: 4, events: 103 }]);
    expect(logLines("usage_message_rejected")).toEqual([]);
    expect(await stored(userId)).toBe(0);
    expect(await stored(dep.userId)).toBe(0);
  });

  it("stops the one-at-a-time pass as soon as D1 answers that it is unavailable, and retries the rest untried", async () => {
    const userId = newId("user");
    const bodies = Array.from({ length: 4 }, () => measurement(userId, "agt_midway"));
    // The chunk is refused (not an outage), the first message lands alone, then D1 goes down.
    const d1 = countingD1(env.DB, async (n) => {
      if (n === 1) throw new Error("D1_ERROR: something unexpected");
      if (n >= 3) throw new Error("D1_ERROR: Network connection lost.");
    });
    const { batch, outcomes } = handMadeBatch("usage-events", bodies, 1);
    await handleUsageBatch(batch, { db: createDb(d1) });
    expect([...outcomes.values()].map((o) => o.op)).toEqual(["ack", "retry", "retry", "retry"]);
    expect(d1.writes).toBe(3);
    expect(await stored(userId)).toBe(1);
    expect(logLines("usage_batch_failed")).toMatchObject([{ count: 3, events: 3 }]);
    expect(logLines("usage_message_rejected")).toEqual([]);
  });

  it("a chunk D1 stored but answered as failed is written again message by message, stored and billed once", async () => {
    const userId = newId("user");
    const agentId = newId("agent");
    const bodies = [measurement(userId, agentId), measurement(userId, agentId), measurement(userId, agentId)];
    // The first write commits, then its answer is lost with an error that does not say outage.
    const d1 = countingD1(env.DB, async (n, run) => {
      if (n === 1) {
        await run();
        throw new Error("D1_ERROR: the reply was garbled");
      }
    });
    const { batch, outcomes } = handMadeBatch("usage-events", bodies, 1);
    await handleUsageBatch(batch, { db: createDb(d1) });
    expect([...outcomes.values()].map((o) => o.op)).toEqual(["ack", "ack", "ack"]);
    expect(d1.writes).toBe(4);
    expect(await stored(userId)).toBe(3);
    expect(await billed(userId)).toMatchObject({ requests: 3, bytesIn: 30 });
    expect(await statsInvocations(agentId)).toBe(3);
  });
});
