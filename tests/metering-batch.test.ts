// The gateway's measurements leave the isolate in batches (src/services/metering/record-invocation.ts):
// one queue sendBatch per batch, each request's promise settled once its measurement is sent,
// and a batch the queue refuses written straight to D1.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import {
  type InvocationMeasurement,
  recordInvocation,
  USAGE_BATCH_MAX_EVENTS,
  type UsageQueue,
} from "../src/services/metering/record-invocation";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate } from "./helpers/deploy-flow";

function measurement(requestId: string, ids = { userId: "usr_x", agentId: "agt_x", deploymentId: "dep_x" }) {
  return {
    requestId,
    ...ids,
    runtimeProvider: "cloudflare",
    startedAt: Date.now(),
    durationMs: 5,
    ok: true,
    bytesIn: 10,
    bytesOut: 20,
    streaming: false,
  } satisfies InvocationMeasurement;
}

function recordingQueue(opts: { fail?: boolean } = {}) {
  const batches: string[][] = [];
  let singles = 0;
  const queue: UsageQueue = {
    async send() {
      singles++;
    },
    async sendBatch(messages) {
      if (opts.fail) throw new Error("queue down");
      batches.push([...messages].map((m) => m.body.dedupeKey));
    },
  };
  return { queue, batches, singles: () => singles };
}

describe("gateway measurements, batched", () => {
  it("sends measurements recorded together as one queue batch, settling each request once it is sent", async () => {
    const { queue, batches, singles } = recordingQueue();
    const db = createDb(env.DB);
    const ids = ["req_a", "req_b", "req_c"].map((id) => `${id}_${crypto.randomUUID().slice(0, 8)}`);
    let settled = 0;
    await Promise.all(
      ids.map((id) => recordInvocation({ db, usageQueue: queue }, measurement(id)).then(() => settled++)),
    );
    expect(settled).toBe(3);
    expect(batches).toEqual([ids]);
    expect(singles()).toBe(0);
  });

  it(`never puts more than ${USAGE_BATCH_MAX_EVENTS} measurements in one batch`, async () => {
    const { queue, batches } = recordingQueue();
    const db = createDb(env.DB);
    const ids = Array.from({ length: USAGE_BATCH_MAX_EVENTS + 50 }, (_, i) => `req_many_${i}_${crypto.randomUUID()}`);
    await Promise.all(ids.map((id) => recordInvocation({ db, usageQueue: queue }, measurement(id))));
    expect(batches.map((b) => b.length)).toEqual([USAGE_BATCH_MAX_EVENTS, 50]);
    expect(batches.flat()).toEqual(ids);
  });

  it("writes a batch the queue refuses straight to D1", async () => {
    const { headers } = await newUser("batch-fallback");
    const agent = await createAgent(headers);
    const deployment = await deployAndActivate(headers, agent.id);
    const row = await env.DB.prepare("SELECT user_id AS userId FROM deployments WHERE id = ?")
      .bind(deployment.id)
      .first<{ userId: string }>();
    const ids = { userId: row!.userId, agentId: agent.id, deploymentId: deployment.id };
    const { queue } = recordingQueue({ fail: true });
    const db = createDb(env.DB);
    const requestIds = [`req_fb1_${crypto.randomUUID()}`, `req_fb2_${crypto.randomUUID()}`];
    await Promise.all(requestIds.map((id) => recordInvocation({ db, usageQueue: queue }, measurement(id, ids))));
    const stored = await env.DB.prepare(
      "SELECT dedupe_key AS k FROM metrics_events WHERE source = 'gateway' AND dedupe_key IN (?, ?) ORDER BY dedupe_key",
    )
      .bind(...requestIds)
      .all<{ k: string }>();
    expect(stored.results.map((r) => r.k)).toEqual([...requestIds].sort());
  });
});
