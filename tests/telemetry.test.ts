// Telemetry ingestion through both doors: POST /v1/telemetry/report and the TelemetrySink RPC
// entrypoint. Happy paths, dedupe, and the hostile-input catalogue (issue 6, "Telemetry").
import { env, exports } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { billingUsage, deployments, metricsEvents } from "../src/db/schema";
import { newId } from "../src/lib/ids";
import { TELEMETRY_MAX_BATCH_EVENTS, TELEMETRY_MAX_BODY_BYTES } from "../src/services/telemetry/event";
import { type SeededDeployment, seedDeployment, signTelemetry, telemetryEvent } from "./helpers/deployments";
import { call, expectProblem, json } from "./helpers/http";
import { drainUsageQueue } from "./helpers/usage-queue";

const HOUR = 60 * 60 * 1000;

type ReportOpts = { signature?: string | null; deploymentId?: string | null; headers?: Record<string, string> };

/** POSTs `body` (text, sent byte for byte) signed with `dep`'s secret unless told otherwise. */
async function report(dep: SeededDeployment, body: string, opts: ReportOpts = {}): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
  const signature = opts.signature === undefined ? await signTelemetry(dep.secret, body) : opts.signature;
  const deploymentId = opts.deploymentId === undefined ? dep.deploymentId : opts.deploymentId;
  if (signature !== null) headers["x-telemetry-signature"] = signature;
  if (deploymentId !== null) headers["x-telemetry-deployment-id"] = deploymentId;
  return call("POST", "/v1/telemetry/report", { headers, rawBody: body });
}

/** The deployment's stored telemetry, once everything queued so far has been consumed. */
async function storedTelemetry(deploymentId: string) {
  await drainUsageQueue();
  return createDb(env.DB)
    .select()
    .from(metricsEvents)
    .where(and(eq(metricsEvents.deploymentId, deploymentId), eq(metricsEvents.source, "telemetry")));
}

describe("POST /v1/telemetry/report: accepted reports", () => {
  it("answers 202 { accepted, queued } and stores the event once the queue is consumed", async () => {
    const dep = await seedDeployment();
    const event = telemetryEvent(dep, { traceId: "trace-1", usage: { inputTokens: 7, outputTokens: 11 } });
    const res = await report(dep, JSON.stringify(event));
    expect(res.status).toBe(202);
    expect(await json(res)).toEqual({ accepted: 1, queued: true });
    const rows = await storedTelemetry(dep.deploymentId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      userId: dep.userId,
      agentId: dep.agentId,
      deploymentId: dep.deploymentId,
      source: "telemetry",
      eventId: event.eventId,
      traceId: "trace-1",
      dedupeKey: `event:${event.eventId}`,
      runtimeProvider: "cloudflare",
      kind: "invoke",
      ts: event.ts,
      durationMs: 12,
      status: "ok",
      inputTokens: 7,
      outputTokens: 11,
      bytesIn: null,
    });
  });

  it("stores every event of a batch", async () => {
    const dep = await seedDeployment();
    const events = [
      telemetryEvent(dep),
      telemetryEvent(dep, { status: "error", errorCode: "boom" }),
      telemetryEvent(dep),
    ];
    const res = await report(dep, JSON.stringify({ events }));
    expect(await json(res)).toEqual({ accepted: 3, queued: true });
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(3);
  });

  it("accepts the largest allowed batch", async () => {
    const dep = await seedDeployment();
    const events = Array.from({ length: TELEMETRY_MAX_BATCH_EVENTS }, () => telemetryEvent(dep, { usage: undefined }));
    const res = await report(dep, JSON.stringify({ events }));
    expect(await json(res)).toEqual({ accepted: TELEMETRY_MAX_BATCH_EVENTS, queued: true });
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(TELEMETRY_MAX_BATCH_EVENTS);
  });

  it("stores a replayed report once: the replay is queued too and dropped by the consumer", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep));
    expect(await json(await report(dep, body))).toEqual({ accepted: 1, queued: true });
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(1);
    // Replayed after the first copy was stored, and again while nothing has been consumed yet.
    expect(await json(await report(dep, body))).toEqual({ accepted: 1, queued: true });
    expect(await json(await report(dep, body))).toEqual({ accepted: 1, queued: true });
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(1);
  });

  it("meters verified tokens into billing_usage once, however often the report is replayed", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify({
      events: [
        telemetryEvent(dep, { usage: { inputTokens: 4, outputTokens: 6 } }),
        telemetryEvent(dep, { usage: { inputTokens: 1 } }),
      ],
    });
    await report(dep, body);
    expect(await json(await report(dep, body))).toEqual({ accepted: 2, queued: true });
    await drainUsageQueue();
    const rows = await createDb(env.DB).select().from(billingUsage).where(eq(billingUsage.agentId, dep.agentId));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      userId: dep.userId,
      inputTokens: 5,
      outputTokens: 6,
      requests: 0,
      errors: 0,
      telemetryEvents: 2,
    });
  });

  it("dedupes by eventId, else by traceId, within a batch and across reports", async () => {
    const dep = await seedDeployment();
    const first = await report(
      dep,
      JSON.stringify({
        events: [
          telemetryEvent(dep, { eventId: "same" }),
          telemetryEvent(dep, { eventId: "same", durationMs: 99 }),
          telemetryEvent(dep, { eventId: undefined, traceId: "t-1" }),
          telemetryEvent(dep, { eventId: undefined, traceId: "t-1" }),
          // An eventId equal to another event's traceId is a different event.
          telemetryEvent(dep, { eventId: "t-1" }),
        ],
      }),
    );
    expect(await json(first)).toEqual({ accepted: 5, queued: true });
    const again = await report(dep, JSON.stringify(telemetryEvent(dep, { eventId: undefined, traceId: "t-1" })));
    expect(await json(again)).toEqual({ accepted: 1, queued: true });
    const rows = await storedTelemetry(dep.deploymentId);
    expect(rows.map((r) => r.dedupeKey).sort()).toEqual(["event:same", "event:t-1", "trace:t-1"]);
    expect(rows.find((r) => r.dedupeKey === "event:same")?.durationMs).toBe(12);
  });

  it("dedupes per deployment: the same eventId in two deployments is two events", async () => {
    const a = await seedDeployment();
    const b = await seedDeployment();
    expect(await json(await report(a, JSON.stringify(telemetryEvent(a, { eventId: "shared" }))))).toEqual({
      accepted: 1,
      queued: true,
    });
    expect(await json(await report(b, JSON.stringify(telemetryEvent(b, { eventId: "shared" }))))).toEqual({
      accepted: 1,
      queued: true,
    });
    expect(await storedTelemetry(a.deploymentId)).toHaveLength(1);
    expect(await storedTelemetry(b.deploymentId)).toHaveLength(1);
  });

  it("accepts events at the edges of the time window", async () => {
    const dep = await seedDeployment();
    const now = Date.now();
    const events = [telemetryEvent(dep, { ts: now - 23 * HOUR }), telemetryEvent(dep, { ts: now + 4 * 60_000 })];
    expect(await json(await report(dep, JSON.stringify({ events })))).toEqual({ accepted: 2, queued: true });
  });

  it("verifies a deployment whose stored secret is the base64url text rather than raw bytes", async () => {
    const dep = await seedDeployment({ plaintext: "base64url" });
    expect((await report(dep, JSON.stringify(telemetryEvent(dep)))).status).toBe(202);
  });
});

describe("the per-isolate deployment key cache", () => {
  async function setCiphertext(deploymentId: string, value: string) {
    await createDb(env.DB)
      .update(deployments)
      .set({ telemetrySecretCiphertext: value })
      .where(eq(deployments.id, deploymentId));
  }

  it("reuses a deployment's decrypted key instead of reading D1 for every report", async () => {
    const dep = await seedDeployment();
    expect((await report(dep, JSON.stringify(telemetryEvent(dep)))).status).toBe(202);
    // Deployments are immutable; were the key read again, this unreadable envelope would fail.
    await setCiphertext(dep.deploymentId, "v1.unknown.AAAA.AAAA");
    expect((await report(dep, JSON.stringify(telemetryEvent(dep)))).status).toBe(202);
  });

  it("does not remember a key that failed to decrypt (500), and recovers once it decrypts", async () => {
    const dep = await seedDeployment();
    const [row] = await createDb(env.DB)
      .select({ sealed: deployments.telemetrySecretCiphertext })
      .from(deployments)
      .where(eq(deployments.id, dep.deploymentId));
    await setCiphertext(dep.deploymentId, "v1.unknown.AAAA.AAAA");
    await expectProblem(await report(dep, JSON.stringify(telemetryEvent(dep))), 500, "internal_error");
    await setCiphertext(dep.deploymentId, row!.sealed);
    expect((await report(dep, JSON.stringify(telemetryEvent(dep)))).status).toBe(202);
  });
});

describe("POST /v1/telemetry/report: signature checks (401)", () => {
  it("refuses a body with one changed byte, without echoing the expected signature", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep, { durationMs: 10 }));
    const signature = await signTelemetry(dep.secret, body);
    const tampered = body.replace('"durationMs":10', '"durationMs":90');
    expect(tampered).not.toBe(body);
    expect(tampered.length).toBe(body.length);
    const res = await report(dep, tampered, { signature });
    const text = await res.clone().text();
    const problem = await expectProblem(res, 401, "invalid_telemetry_signature");
    expect(problem.check).toBe("signature_mismatch");
    const expected = await signTelemetry(dep.secret, tampered);
    expect(text).not.toContain(expected.slice(3));
    expect(text).not.toContain(signature.slice(3));
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(0);
  });

  it("refuses re-serialised JSON: the signature covers bytes, not meaning", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep));
    const signature = await signTelemetry(dep.secret, body);
    const reserialised = JSON.stringify(JSON.parse(body), null, 1);
    const problem = await expectProblem(
      await report(dep, reserialised, { signature }),
      401,
      "invalid_telemetry_signature",
    );
    expect(problem.check).toBe("signature_mismatch");
  });

  it.each([
    ["too short", `v1=${"a".repeat(63)}`],
    ["too long", `v1=${"a".repeat(65)}`],
    ["not hex", `v1=${"g".repeat(64)}`],
    ["uppercase hex", `v1=${"A".repeat(64)}`],
    ["without the v1= prefix", "a".repeat(64)],
    ["another scheme version", `v2=${"a".repeat(64)}`],
    ["the prefix alone", "v1="],
  ])("refuses a signature %s as signature_format", async (_label, signature) => {
    const dep = await seedDeployment();
    const problem = await expectProblem(
      await report(dep, JSON.stringify(telemetryEvent(dep)), { signature }),
      401,
      "invalid_telemetry_signature",
    );
    expect(problem.check).toBe("signature_format");
  });

  it("refuses the uppercase form of the correct signature (lowercase hex only)", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep));
    const signature = await signTelemetry(dep.secret, body);
    const upper = `v1=${signature.slice(3).toUpperCase()}`;
    const problem = await expectProblem(
      await report(dep, body, { signature: upper }),
      401,
      "invalid_telemetry_signature",
    );
    expect(problem.check).toBe("signature_format");
  });

  it("refuses an empty or missing signature header and a missing deployment header", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep));
    const empty = await expectProblem(await report(dep, body, { signature: "" }), 401, "invalid_telemetry_signature");
    expect(empty.check).toBe("signature_missing");
    const missing = await expectProblem(
      await report(dep, body, { signature: null }),
      401,
      "invalid_telemetry_signature",
    );
    expect(missing.check).toBe("signature_missing");
    const noDeployment = await expectProblem(
      await report(dep, body, { deploymentId: null }),
      401,
      "invalid_telemetry_signature",
    );
    expect(noDeployment.check).toBe("deployment_id_missing");
    const neither = await expectProblem(
      await report(dep, body, { signature: null, deploymentId: null }),
      401,
      "invalid_telemetry_signature",
    );
    expect(neither.check).toBe("signature_missing");
  });

  it("refuses a body signed with a wrong secret", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep));
    const signature = await signTelemetry(crypto.getRandomValues(new Uint8Array(32)), body);
    const problem = await expectProblem(await report(dep, body, { signature }), 401, "invalid_telemetry_signature");
    expect(problem.check).toBe("signature_mismatch");
  });

  it("refuses deployment A's secret used to report for deployment B", async () => {
    const a = await seedDeployment();
    const b = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(b));
    const signature = await signTelemetry(a.secret, body);
    const problem = await expectProblem(await report(b, body, { signature }), 401, "invalid_telemetry_signature");
    expect(problem.check).toBe("signature_mismatch");
    expect(await storedTelemetry(b.deploymentId)).toHaveLength(0);
  });

  it("answers an unknown or malformed deployment id exactly like a wrong signature", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify(telemetryEvent(dep));
    const wrong = await expectProblem(
      await report(dep, body, { signature: await signTelemetry(new Uint8Array(32), body) }),
      401,
      "invalid_telemetry_signature",
    );
    for (const deploymentId of [newId("deployment"), "dep_nope", "'; drop table deployments; --"]) {
      const unknown = await expectProblem(
        await report(dep, body, { deploymentId }),
        401,
        "invalid_telemetry_signature",
      );
      expect({ check: unknown.check, detail: unknown.detail }).toEqual({ check: wrong.check, detail: wrong.detail });
    }
  });
});

describe("POST /v1/telemetry/report: content checks (400, 413, 415)", () => {
  it("refuses an event naming another deployment than the header (400 deployment_mismatch)", async () => {
    const a = await seedDeployment();
    const b = await seedDeployment();
    // Signed correctly with A's secret, header A, but the event claims B.
    const body = JSON.stringify({ events: [telemetryEvent(a), telemetryEvent(b)] });
    const problem = await expectProblem(await report(a, body), 400, "telemetry_rejected");
    expect(problem.check).toBe("deployment_mismatch");
    expect(problem.errors).toEqual([{ location: "body.events.1.deploymentId", message: expect.any(String) }]);
    expect(await storedTelemetry(a.deploymentId)).toHaveLength(0);
    expect(await storedTelemetry(b.deploymentId)).toHaveLength(0);
  });

  it("refuses an event whose userId, agentId or runtimeProvider is not the deployment's (400 identity_mismatch)", async () => {
    const dep = await seedDeployment();
    const other = await seedDeployment();
    const sameUserOtherAgent = await seedDeployment({ owner: dep.owner });
    for (const overrides of [
      { userId: other.userId },
      { agentId: sameUserOtherAgent.agentId },
      { agentId: other.agentId },
      // A cloudflare deployment's event claiming another runtime.
      { runtimeProvider: "agentcore" },
    ]) {
      const problem = await expectProblem(
        await report(dep, JSON.stringify(telemetryEvent(dep, overrides))),
        400,
        "telemetry_rejected",
      );
      expect(problem.check).toBe("identity_mismatch");
      expect(problem.errors.map((e: { location: string }) => e.location)).toEqual([
        `body.${Object.keys(overrides)[0]}`,
      ]);
    }
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(0);
  });

  it.each([
    ["far in the past", -25 * HOUR],
    ["a year in the past", -365 * 24 * HOUR],
    ["far in the future", 10 * 60_000],
    ["a day in the future", 24 * HOUR],
  ])("refuses an event time %s (400 event_time)", async (_label, offset) => {
    const dep = await seedDeployment();
    const problem = await expectProblem(
      await report(dep, JSON.stringify(telemetryEvent(dep, { ts: Date.now() + offset }))),
      400,
      "telemetry_rejected",
    );
    expect(problem.check).toBe("event_time");
  });

  it("refuses a batch over the maximum, and an empty batch (400 batch_size)", async () => {
    const dep = await seedDeployment();
    const events = Array.from({ length: TELEMETRY_MAX_BATCH_EVENTS + 1 }, () =>
      telemetryEvent(dep, { usage: undefined, status: undefined, durationMs: undefined }),
    );
    const body = JSON.stringify({ events });
    expect(body.length).toBeLessThan(TELEMETRY_MAX_BODY_BYTES);
    const over = await expectProblem(await report(dep, body), 400, "telemetry_rejected");
    expect(over.check).toBe("batch_size");
    const empty = await expectProblem(await report(dep, JSON.stringify({ events: [] })), 400, "telemetry_rejected");
    expect(empty.check).toBe("batch_size");
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(0);
  });

  it("refuses an oversize body before reading it, with and without Content-Length (413)", async () => {
    const dep = await seedDeployment();
    const body = JSON.stringify({ ...telemetryEvent(dep), errorCode: "x".repeat(TELEMETRY_MAX_BODY_BYTES) });
    const withLength = await expectProblem(await report(dep, body), 413, "payload_too_large");
    expect(withLength.limitBytes).toBe(TELEMETRY_MAX_BODY_BYTES);
    const bytes = new TextEncoder().encode(body);
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 8192) controller.enqueue(bytes.slice(i, i + 8192));
        controller.close();
      },
    });
    const res = await exports.default.fetch(
      new Request("http://gateway.test/v1/telemetry/report", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-telemetry-signature": await signTelemetry(dep.secret, body),
          "x-telemetry-deployment-id": dep.deploymentId,
        },
        body: chunked,
      }),
    );
    await expectProblem(res, 413, "payload_too_large");
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(0);
  });

  it("refuses correctly signed bytes that are not JSON (400 malformed_json)", async () => {
    const dep = await seedDeployment();
    for (const body of ['{"eventId": "x",', "not json", "\u00ff\u00fe"]) {
      const problem = await expectProblem(await report(dep, body), 400, "malformed_json");
      expect(problem.check).toBe("json");
    }
    const invalidUtf8 = new Uint8Array([0x7b, 0xff, 0x7d]);
    const res = await call("POST", "/v1/telemetry/report", {
      headers: {
        "content-type": "application/json",
        "x-telemetry-signature": await signTelemetry(dep.secret, invalidUtf8),
        "x-telemetry-deployment-id": dep.deploymentId,
      },
      rawBody: invalidUtf8,
    });
    expect((await expectProblem(res, 400, "malformed_json")).check).toBe("json");
  });

  it("refuses JSON that is neither an event nor { events: [...] } (400 body_shape)", async () => {
    const dep = await seedDeployment();
    for (const body of [
      "[]",
      "42",
      "null",
      '"text"',
      JSON.stringify({ events: {} }),
      JSON.stringify({ events: [], extra: 1 }),
    ]) {
      const problem = await expectProblem(await report(dep, body), 400, "telemetry_rejected");
      expect(problem.check).toBe("body_shape");
    }
  });

  it("refuses events that break the schema, naming each bad field, and stores none of the batch", async () => {
    const dep = await seedDeployment();
    const cases: [Record<string, unknown>, string][] = [
      [telemetryEvent(dep, { eventId: undefined, traceId: undefined }), "body.eventId"],
      [telemetryEvent(dep, { runtimeProvider: "lambda" }), "body.runtimeProvider"],
      [telemetryEvent(dep, { kind: "deploy" }), "body.kind"],
      [telemetryEvent(dep, { ts: 1.5 }), "body.ts"],
      [telemetryEvent(dep, { ts: "now" }), "body.ts"],
      [telemetryEvent(dep, { durationMs: -1 }), "body.durationMs"],
      [telemetryEvent(dep, { status: "maybe" }), "body.status"],
      [telemetryEvent(dep, { usage: { inputTokens: 1, costUsd: 3 } }), "body.usage.costUsd"],
      [telemetryEvent(dep, { source: "gateway" }), "body.source"],
      [telemetryEvent(dep, { eventId: "" }), "body.eventId"],
      [telemetryEvent(dep, { eventId: "x".repeat(129) }), "body.eventId"],
    ];
    for (const [event, location] of cases) {
      const problem = await expectProblem(await report(dep, JSON.stringify(event)), 400, "telemetry_rejected");
      expect(problem.check).toBe("event_schema");
      expect(problem.errors.map((e: { location: string }) => e.location)).toContain(location);
    }
    const batch = JSON.stringify({ events: [telemetryEvent(dep), telemetryEvent(dep, { kind: "x" })] });
    const problem = await expectProblem(await report(dep, batch), 400, "telemetry_rejected");
    expect(problem.errors.map((e: { location: string }) => e.location)).toEqual(["body.events.1.kind"]);
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(0);
  });

  it("refuses a body that is not application/json (415)", async () => {
    const dep = await seedDeployment();
    await expectProblem(
      await report(dep, JSON.stringify(telemetryEvent(dep)), { headers: { "content-type": "text/plain" } }),
      415,
      "unsupported_media_type",
    );
  });

  it("needs no bearer token, and ignores one that is invalid", async () => {
    const dep = await seedDeployment();
    const res = await report(dep, JSON.stringify(telemetryEvent(dep)), {
      headers: { authorization: "Bearer nonsense" },
    });
    expect(res.status).toBe(202);
  });
});

describe("TelemetrySink RPC entrypoint", () => {
  type Props = { userId?: string; agentId?: string; deploymentId?: string };
  const sink = (props?: Props) => (props ? exports.TelemetrySink({ props }) : exports.TelemetrySink);

  /** The message of a rejected RPC call (awaited directly: `expect().rejects` leaks an unhandled rejection). */
  async function rpcFailure(pending: Promise<unknown>): Promise<string> {
    try {
      await pending;
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error("expected the RPC call to be refused");
  }

  async function rpcInput(dep: SeededDeployment, event = telemetryEvent(dep)) {
    const body = JSON.stringify(event);
    return { body, signature: await signTelemetry(dep.secret, body), deploymentId: dep.deploymentId };
  }

  it("accepts a signed report over a plain service binding (no props, namespace mode)", async () => {
    const dep = await seedDeployment();
    const input = await rpcInput(dep);
    expect(await sink().report(input)).toEqual({ accepted: 1, queued: true });
    expect(await sink().report(input)).toEqual({ accepted: 1, queued: true });
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(1);
  });

  it("accepts a report whose props name the same deployment, user and agent", async () => {
    const dep = await seedDeployment();
    const props = { userId: dep.userId, agentId: dep.agentId, deploymentId: dep.deploymentId };
    const body = JSON.stringify({ events: [telemetryEvent(dep), telemetryEvent(dep)] });
    const input = { body, signature: await signTelemetry(dep.secret, body), deploymentId: dep.deploymentId };
    expect(await sink(props).report(input)).toEqual({ accepted: 2, queued: true });
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(2);
  });

  it("refuses a binding of deployment A reporting for deployment B, even with B's secret", async () => {
    const a = await seedDeployment();
    const b = await seedDeployment();
    const props = { userId: a.userId, agentId: a.agentId, deploymentId: a.deploymentId };
    expect(await rpcFailure(sink(props).report(await rpcInput(b)))).toMatch(
      /^invalid_telemetry_signature\[caller_identity\]/,
    );
    expect(await storedTelemetry(b.deploymentId)).toHaveLength(0);
  });

  it("refuses props whose user or agent differ from the deployment's", async () => {
    const dep = await seedDeployment();
    const other = await seedDeployment();
    const input = await rpcInput(dep);
    for (const props of [
      { userId: other.userId, agentId: dep.agentId, deploymentId: dep.deploymentId },
      { userId: dep.userId, agentId: other.agentId, deploymentId: dep.deploymentId },
      { deploymentId: dep.deploymentId },
    ]) {
      expect(await rpcFailure(sink(props).report(input))).toMatch(/^invalid_telemetry_signature\[caller_identity\]/);
    }
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(0);
  });

  it("runs the same checks as the HTTP route and names the failed one in the error", async () => {
    const dep = await seedDeployment();
    const input = await rpcInput(dep);
    expect(await rpcFailure(sink().report({ ...input, body: `${input.body} ` }))).toMatch(
      /^invalid_telemetry_signature\[signature_mismatch\]/,
    );
    expect(await rpcFailure(sink().report({ ...input, signature: input.signature.toUpperCase() }))).toMatch(
      /^invalid_telemetry_signature\[signature_format\]/,
    );
    const late = await rpcInput(dep, telemetryEvent(dep, { ts: Date.now() - 48 * HOUR }));
    expect(await rpcFailure(sink().report(late))).toMatch(/^telemetry_rejected\[event_time\]/);
    const big = "x".repeat(TELEMETRY_MAX_BODY_BYTES + 1);
    expect(
      await rpcFailure(
        sink().report({ body: big, signature: await signTelemetry(dep.secret, big), deploymentId: dep.deploymentId }),
      ),
    ).toMatch(/^payload_too_large\[body_size\]/);
    expect(await rpcFailure(sink().report({ ...input, body: 42 as unknown as string }))).toMatch(
      /^telemetry_rejected\[body_shape\]/,
    );
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(0);
  });

  it("serves a loader-run worker that reports through its TELEMETRY binding", async () => {
    const dep = await seedDeployment();
    const props = { userId: dep.userId, agentId: dep.agentId, deploymentId: dep.deploymentId };
    const input = await rpcInput(dep);
    const worker = env.LOADER!.get(`telemetry-test-${dep.deploymentId}`, () => ({
      compatibilityDate: "2026-08-01",
      mainModule: "index.js",
      modules: {
        "index.js": `export default {
          async fetch(request, env) {
            const input = await request.json();
            try {
              return Response.json(await env.TELEMETRY.report(input));
            } catch (err) {
              return Response.json({ error: String(err.message) }, { status: 500 });
            }
          },
        };`,
      },
      env: { TELEMETRY: exports.TelemetrySink({ props }) },
      globalOutbound: null,
    }));
    const ask = (body: unknown) =>
      worker.getEntrypoint().fetch("http://agent/", { method: "POST", body: JSON.stringify(body) });
    const ok = await ask(input);
    expect(await ok.json()).toEqual({ accepted: 1, queued: true });
    expect(await storedTelemetry(dep.deploymentId)).toHaveLength(1);
    const other = await seedDeployment();
    const refused = await ask(await rpcInput(other));
    expect(refused.status).toBe(500);
    expect(((await refused.json()) as { error: string }).error).toMatch(/caller_identity/);
  });
});
