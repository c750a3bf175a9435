// Idempotency-Key on POST routes: the first final answer is replayed for the same body, a
// different body is 422, a request still running is 409, 5xx/429 and oversize answers release the
// key, records are per principal and route and expire after 24 h (purged by the cron in batches).
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { handleScheduled } from "../src/cron/scheduled";
import { IDEMPOTENCY_TTL_MS, purgeExpiredIdempotencyKeys } from "../src/services/idempotency/idempotency";
import * as modules from "./fixtures/modules";
import { bearer, createApiKeyFor } from "./helpers/api-keys";
import { callWithEnv, recordingQueue } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userIdOf, userMessage } from "./helpers/deploy-flow";
import { db } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";
import { collectSse } from "./helpers/sse";
import { waitFor } from "./helpers/wait";

const idem = (key: string) => ({ "idempotency-key": key });

async function agentRunning(moduleCode: string) {
  const user = await newUser();
  const agent = await createAgent(user.headers);
  await deployAndActivate(user.headers, agent.id, { moduleCode });
  return { headers: user.headers, agent, user };
}

async function deploymentCount(agentId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM deployments WHERE agent_id = ?")
    .bind(agentId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

async function recordOf(key: string) {
  return env.DB.prepare("SELECT state, status_code FROM idempotency_keys WHERE key = ?").bind(key).first();
}

describe("Idempotency-Key", () => {
  it("deploy retried in sequence: one deployment, one queue message, the same answer replayed", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const queue = recordingQueue();
    const key = crypto.randomUUID();
    const body = { moduleCode: modules.fixedAnswer("once") };
    const send = () =>
      callWithEnv({ DEPLOY_QUEUE: queue }, "POST", `/v1/agents/${agent.id}/deploy`, {
        headers: { ...user.headers, ...idem(key) },
        body,
      });
    const first = await send();
    expect(first.status).toBe(202);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const firstBody = await first.text();
    for (let i = 0; i < 3; i++) {
      const again = await send();
      expect(again.status).toBe(202);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(again.headers.get("content-type")).toContain("application/json");
      expect(await again.text()).toBe(firstBody);
    }
    expect(queue.sent).toHaveLength(1);
    expect(await deploymentCount(agent.id)).toBe(1);
  });

  it("deploy retried concurrently: exactly one runs; the others get 409 with Retry-After or the replay", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const queue = recordingQueue();
    const key = crypto.randomUUID();
    const body = { moduleCode: modules.fixedAnswer("concurrent") };
    const answers = await Promise.all(
      Array.from({ length: 6 }, () =>
        callWithEnv({ DEPLOY_QUEUE: queue }, "POST", `/v1/agents/${agent.id}/deploy`, {
          headers: { ...user.headers, ...idem(key) },
          body,
        }),
      ),
    );
    const fresh = answers.filter((r) => r.status === 202 && r.headers.get("idempotent-replayed") === null);
    expect(fresh).toHaveLength(1);
    for (const res of answers) {
      if (res === fresh[0]) continue;
      if (res.status === 409) {
        const problem = await expectProblem(res, 409, "idempotency_in_progress");
        expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
        expect(problem.detail).toContain("still running");
      } else {
        expect(res.status).toBe(202);
        expect(res.headers.get("idempotent-replayed")).toBe("true");
      }
    }
    expect(queue.sent).toHaveLength(1);
    expect(await deploymentCount(agent.id)).toBe(1);
  });

  it("answers a reuse with a different body 422 idempotency_key_reused, running nothing", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const queue = recordingQueue();
    const key = crypto.randomUUID();
    const path = `/v1/agents/${agent.id}/deploy`;
    const headers = { ...user.headers, ...idem(key) };
    const one = await callWithEnv({ DEPLOY_QUEUE: queue }, "POST", path, {
      headers,
      body: { moduleCode: modules.fixedAnswer("a") },
    });
    expect(one.status).toBe(202);
    const other = await callWithEnv({ DEPLOY_QUEUE: queue }, "POST", path, {
      headers,
      body: { moduleCode: modules.fixedAnswer("b") },
    });
    await expectProblem(other, 422, "idempotency_key_reused");
    expect(queue.sent).toHaveLength(1);
    expect(await deploymentCount(agent.id)).toBe(1);
  });

  it("invoke: replays the answer without running the agent again; a 5xx releases the key so a retry runs", async () => {
    const { headers, agent } = await agentRunning(modules.COUNTS_THEN_THROWS);
    const path = `/v1/invoke/${agent.id}`;
    const key = crypto.randomUUID();
    const first = await call("POST", path, { headers: { ...headers, ...idem(key) }, body: userMessage("count") });
    expect(first.status).toBe(200);
    const firstBody = await first.text();
    expect(JSON.parse(firstBody).output.text).toBe("1");
    const replay = await call("POST", path, { headers: { ...headers, ...idem(key) }, body: userMessage("count") });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.headers.get("x-deployment-id")).toBe(first.headers.get("x-deployment-id"));
    expect(await replay.text()).toBe(firstBody);

    const failKey = crypto.randomUUID();
    for (let i = 0; i < 2; i++) {
      const res = await call("POST", path, { headers: { ...headers, ...idem(failKey) }, body: userMessage("fail") });
      expect(res.headers.get("idempotent-replayed")).toBeNull();
      await expectProblem(res, 502, "upstream_exception");
    }
    expect(await recordOf(failKey)).toBeNull();
    // The agent ran: once for the replayed count, twice for the failures, once now.
    const count = await call("POST", path, { headers, body: userMessage("count") });
    expect((await json(count)).output.text).toBe("4");
  });

  it("invoke/stream: the stream is relayed as usual; a repeat replays its done answer as JSON", async () => {
    const { headers, agent } = await agentRunning(modules.fixedAnswer("streamed once"));
    const path = `/v1/invoke/${agent.id}/stream`;
    const key = crypto.randomUUID();
    const first = await call("POST", path, { headers: { ...headers, ...idem(key) }, body: userMessage("hi") });
    expect(first.headers.get("content-type")).toContain("text/event-stream");
    const events = await collectSse(first);
    const done = events.find((e) => e.event === "done");
    expect(done?.data).toMatchObject({ output: { text: "streamed once" } });
    // The done answer is stored once the stream has ended (after the response).
    const replay = await waitFor(
      async () => {
        const res = await call("POST", path, { headers: { ...headers, ...idem(key) }, body: userMessage("hi") });
        if (res.status === 409) return undefined;
        return res;
      },
      { what: "the stored done answer" },
    );
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.headers.get("content-type")).toContain("application/json");
    expect(await json(replay)).toEqual(done?.data);
  });

  it("stores 4xx answers but not answers over 1 MiB (the key is released and a retry runs)", async () => {
    const user = await newUser();
    const name = `idem-${crypto.randomUUID().slice(0, 8)}`;
    const key = crypto.randomUUID();
    const create = () => call("POST", "/v1/agents", { headers: { ...user.headers, ...idem(key) }, body: { name } });
    const created = await create();
    expect(created.status).toBe(201);
    const again = await create();
    expect(again.status).toBe(201);
    expect((await json(again)).agent.id).toBe((await json(created)).agent.id);
    // Without the key the same body is a new request: the name is taken (a 4xx, stored too).
    const taken = crypto.randomUUID();
    const takenFirst = await call("POST", "/v1/agents", {
      headers: { ...user.headers, ...idem(taken) },
      body: { name },
    });
    const firstProblem = await expectProblem(takenFirst, 409, "agent_name_taken");
    const takenAgain = await call("POST", "/v1/agents", {
      headers: { ...user.headers, ...idem(taken) },
      body: { name },
    });
    expect(takenAgain.status).toBe(409);
    expect(takenAgain.headers.get("idempotent-replayed")).toBe("true");
    expect(takenAgain.headers.get("content-type")).toBe("application/problem+json");
    // The replayed body is the first answer's, requestId included; x-request-id names this request.
    expect(await json(takenAgain)).toEqual(firstProblem);
    expect(takenAgain.headers.get("x-request-id")).not.toBe(firstProblem.requestId);

    const big = `export default { async fetch() { return Response.json({ output: { text: "x".repeat(1100000) } }); } };`;
    const { headers, agent } = await agentRunning(big);
    const bigKey = crypto.randomUUID();
    for (let i = 0; i < 2; i++) {
      const res = await call("POST", `/v1/invoke/${agent.id}`, {
        headers: { ...headers, ...idem(bigKey) },
        body: userMessage("big"),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("idempotent-replayed")).toBeNull();
      expect((await json(res)).output.text).toHaveLength(1100000);
    }
    expect(await recordOf(bigKey)).toBeNull();
  });

  it("scopes keys by principal (user, and API key or JWT) and by route", async () => {
    const alice = await newUser();
    const bob = await newUser();
    const key = crypto.randomUUID();
    const name = `shared-${crypto.randomUUID().slice(0, 8)}`;
    const a = await call("POST", "/v1/agents", { headers: { ...alice.headers, ...idem(key) }, body: { name } });
    const b = await call("POST", "/v1/agents", { headers: { ...bob.headers, ...idem(key) }, body: { name } });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.headers.get("idempotent-replayed")).toBeNull();
    // The same user through an API key is another principal: it runs (and finds the name taken).
    const apiKey = await createApiKeyFor(alice.headers, { name: "ci", scopes: ["agents:write"] });
    const viaKey = await call("POST", "/v1/agents", {
      headers: { ...bearer(apiKey.key), ...idem(key) },
      body: { name },
    });
    expect(viaKey.headers.get("idempotent-replayed")).toBeNull();
    await expectProblem(viaKey, 409, "agent_name_taken");
    // Another route with the same key runs too.
    const agentId = (await json(a)).agent.id;
    const disable = await call("POST", `/v1/agents/${agentId}/disable`, {
      headers: { ...alice.headers, ...idem(key) },
    });
    expect(disable.status).toBe(200);
    expect(disable.headers.get("idempotent-replayed")).toBeNull();
  });

  it("refuses an Idempotency-Key over 255 characters or with control characters; accepts 255", async () => {
    const user = await newUser();
    for (const bad of ["k".repeat(256), "tab\there"]) {
      const problem = await expectProblem(
        await call("POST", "/v1/agents", { headers: { ...user.headers, ...idem(bad) }, body: { name: "x1" } }),
        400,
        "validation_failed",
      );
      expect(problem.errors).toEqual([{ location: "header.idempotency-key", message: expect.any(String) }]);
    }
    const ok = await call("POST", "/v1/agents", {
      headers: { ...user.headers, ...idem("k".repeat(255)) },
      body: { name: `ok-${crypto.randomUUID().slice(0, 8)}` },
    });
    expect(ok.status).toBe(201);
  });

  it("runs again once the record has expired, and takes over a claim abandoned mid-request", async () => {
    const user = await newUser();
    const key = crypto.randomUUID();
    const body = { name: `exp-${crypto.randomUUID().slice(0, 8)}` };
    const headers = { ...user.headers, ...idem(key) };
    expect((await call("POST", "/v1/agents", { headers, body })).status).toBe(201);
    await env.DB.prepare("UPDATE idempotency_keys SET expires_at = ? WHERE key = ?")
      .bind(Date.now() - 1, key)
      .run();
    const rerun = await call("POST", "/v1/agents", { headers, body });
    expect(rerun.headers.get("idempotent-replayed")).toBeNull();
    await expectProblem(rerun, 409, "agent_name_taken");

    // A claim whose request died: still running, its lock passed.
    const stale = crypto.randomUUID();
    const userId = await userIdOf(user.subject);
    const { sha256Hex } = await import("../src/crypto/encoding");
    const takeover = { name: `stale-${crypto.randomUUID().slice(0, 8)}` };
    const now = Date.now();
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (principal, route, key, fingerprint, state, claim_id, locked_until, created_at, expires_at) VALUES (?, 'POST /v1/agents', ?, ?, 'running', 'dead', ?, ?, ?)",
    )
      .bind(
        `${userId}:jwt`,
        stale,
        await sha256Hex(JSON.stringify(takeover)),
        now + 60_000,
        now,
        now + IDEMPOTENCY_TTL_MS,
      )
      .run();
    const busy = await call("POST", "/v1/agents", { headers: { ...user.headers, ...idem(stale) }, body: takeover });
    await expectProblem(busy, 409, "idempotency_in_progress");
    await env.DB.prepare("UPDATE idempotency_keys SET locked_until = ? WHERE key = ?")
      .bind(now - 1, stale)
      .run();
    const taken = await call("POST", "/v1/agents", { headers: { ...user.headers, ...idem(stale) }, body: takeover });
    expect(taken.status).toBe(201);
    expect(await recordOf(stale)).toMatchObject({ state: "done", status_code: 201 });
  });

  it("purges expired records in bounded batches", async () => {
    const principal = `usr_purge_${crypto.randomUUID()}:jwt`;
    const now = Date.now();
    for (let i = 0; i < 5; i++) {
      await env.DB.prepare(
        "INSERT INTO idempotency_keys (principal, route, key, fingerprint, state, claim_id, locked_until, created_at, expires_at) VALUES (?, 'POST /x', ?, 'f', 'done', 'c', 0, 0, ?)",
      )
        .bind(principal, `k${i}`, now - IDEMPOTENCY_TTL_MS - 1)
        .run();
    }
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (principal, route, key, fingerprint, state, claim_id, locked_until, created_at, expires_at) VALUES (?, 'POST /x', 'live', 'f', 'done', 'c', 0, ?, ?)",
    )
      .bind(principal, now, now + IDEMPOTENCY_TTL_MS)
      .run();
    // Other tests' expired rows may be purged here too; ours are what is counted below.
    const first = await purgeExpiredIdempotencyKeys(db, { batchSize: 2, maxBatches: 1, now });
    expect(first).toEqual({ deleted: 2, complete: false });
    await purgeExpiredIdempotencyKeys(db, { batchSize: 100, maxBatches: 10, now });
    const left = await env.DB.prepare("SELECT key FROM idempotency_keys WHERE principal = ?").bind(principal).all();
    expect(left.results.map((r) => r.key)).toEqual(["live"]);
  });

  it("the cron purges expired records (purge_idempotency_keys)", async () => {
    const principal = `usr_cron_${crypto.randomUUID()}:jwt`;
    const now = Date.now();
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (principal, route, key, fingerprint, state, claim_id, locked_until, created_at, expires_at) VALUES (?, 'POST /x', 'old', 'f', 'done', 'c', 0, 0, ?), (?, 'POST /x', 'live', 'f', 'done', 'c', 0, ?, ?)",
    )
      .bind(principal, now - 1, principal, now, now + IDEMPOTENCY_TTL_MS)
      .run();
    const ctx = createExecutionContext();
    // Other tasks may fail in this environment; each task runs regardless of the others.
    await handleScheduled(createScheduledController({ scheduledTime: now, cron: "*/5 * * * *" }), env, ctx).catch(
      () => undefined,
    );
    await waitOnExecutionContext(ctx);
    const left = await env.DB.prepare("SELECT key FROM idempotency_keys WHERE principal = ?").bind(principal).all();
    expect(left.results.map((r) => r.key)).toEqual(["live"]);
  });
});
