// Scoped API keys: created, listed and revoked with a user's JWT only; used as a bearer on every
// other route within their scopes and agents; unknown, expired and revoked keys are one 401.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { API_KEY_PATTERN, hashApiKey } from "../src/auth/api-key-format";
import { API_KEY_CACHE_TTL_MS, verifyApiKey } from "../src/services/api-keys/verify";
import { bearer, createApiKeyFor as createKey } from "./helpers/api-keys";
import { newUser } from "./helpers/auth";
import { createAgent, userIdOf } from "./helpers/deploy-flow";
import { db } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";
import { waitFor } from "./helpers/wait";

const ALL_SCOPES = ["agents:read", "agents:write", "deploy", "invoke", "secrets:write", "usage:read"];

describe("API keys", () => {
  it("creates a key shown once, stored only as its SHA-256, listed without it, audited", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const res = await call("POST", "/v1/api-keys", {
      headers: user.headers,
      body: { name: "ci", scopes: ["deploy", "invoke"], agentIds: [agent.id] },
    });
    expect(res.status).toBe(201);
    const created = await json(res);
    expect(created.key).toMatch(API_KEY_PATTERN);
    expect(created.apiKey).toEqual({
      id: expect.stringMatching(/^key_/),
      name: "ci",
      scopes: ["deploy", "invoke"],
      agentIds: [agent.id],
      prefix: created.key.slice(0, 12),
      createdAt: expect.any(Number),
      expiresAt: created.apiKey.createdAt + 90 * 24 * 60 * 60_000,
      lastUsedAt: null,
    });
    const row = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(created.apiKey.id).first();
    expect(row?.key_hash).toBe(await hashApiKey(created.key));
    expect(JSON.stringify(row)).not.toContain(created.key.slice(12));

    const list = await call("GET", "/v1/api-keys", { headers: user.headers });
    const text = await list.text();
    expect(list.status).toBe(200);
    expect(JSON.parse(text).apiKeys).toEqual([created.apiKey]);
    expect(text).not.toContain(created.key.slice(12));
    expect(text).not.toContain(String(row?.key_hash));

    const audit = await json(await call("GET", "/v1/audit", { headers: user.headers }));
    expect(audit.entries.map((e: { action: string; targetId: string }) => [e.action, e.targetId])).toContainEqual([
      "api_key.created",
      created.apiKey.id,
    ]);
  });

  it("never stores a new key in an Idempotency-Key record: the header is ignored on create", async () => {
    const user = await newUser();
    const headers = { ...user.headers, "idempotency-key": crypto.randomUUID() };
    const one = await json(await call("POST", "/v1/api-keys", { headers, body: { name: "a", scopes: ["invoke"] } }));
    const two = await call("POST", "/v1/api-keys", { headers, body: { name: "a", scopes: ["invoke"] } });
    expect(two.status).toBe(201);
    expect(two.headers.get("idempotent-replayed")).toBeNull();
    expect((await json(two)).key).not.toBe(one.key);
    const stored = await env.DB.prepare("SELECT count(*) AS n FROM idempotency_keys WHERE key = ?")
      .bind(headers["idempotency-key"])
      .first<{ n: number }>();
    expect(stored?.n).toBe(0);
  });

  it("authenticates as the user who made it, within its scope, and records lastUsedAt", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const { id, key } = await createKey(user.headers, { name: "reader", scopes: ["agents:read"] });
    const res = await call("GET", `/v1/agents/${agent.id}`, { headers: bearer(key) });
    expect(res.status).toBe(200);
    expect((await json(res)).agent.id).toBe(agent.id);
    const used = await waitFor(
      async () => {
        const r = await env.DB.prepare("SELECT last_used_at AS t FROM api_keys WHERE id = ?")
          .bind(id)
          .first<{ t: number | null }>();
        return r?.t ?? undefined;
      },
      { what: "lastUsedAt" },
    );
    // Written at most once a minute: a second call within the minute leaves it as it was.
    expect((await call("GET", "/v1/agents", { headers: bearer(key) })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    const again = await env.DB.prepare("SELECT last_used_at AS t FROM api_keys WHERE id = ?")
      .bind(id)
      .first<{ t: number }>();
    expect(again?.t).toBe(used);
  });

  it("answers a route outside the key's scopes 403 insufficient_scope naming the scope", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const { key } = await createKey(user.headers, { name: "reader", scopes: ["agents:read"] });
    const problem = await expectProblem(
      await call("PATCH", `/v1/agents/${agent.id}`, { headers: bearer(key), body: { description: "x" } }),
      403,
      "insufficient_scope",
    );
    expect(problem.scope).toBe("agents:write");
    expect(problem.detail).toContain("agents:write");
    await expectProblem(await call("GET", "/v1/usage/current", { headers: bearer(key) }), 403, "insufficient_scope");
    const unchanged = await json(await call("GET", `/v1/agents/${agent.id}`, { headers: user.headers }));
    expect(unchanged.agent.description).toBeNull();
  });

  it("restricts a key to its agents: another agent is 404 as another user's, lists show only its agents", async () => {
    const user = await newUser();
    const mine = await createAgent(user.headers);
    const other = await createAgent(user.headers);
    const { key } = await createKey(user.headers, { name: "one-agent", scopes: ALL_SCOPES, agentIds: [mine.id] });
    expect((await call("GET", `/v1/agents/${mine.id}`, { headers: bearer(key) })).status).toBe(200);
    for (const [method, path] of [
      ["GET", `/v1/agents/${other.id}`],
      ["PATCH", `/v1/agents/${other.id}`],
      ["GET", `/v1/agents/${other.id}/deployments`],
      ["POST", `/v1/agents/${other.id}/deploy`],
      ["POST", `/v1/invoke/${other.id}`],
      ["PUT", `/v1/agents/${other.id}/secrets/TOKEN`],
      ["GET", `/v1/metrics/recent?agentId=${other.id}`],
      ["DELETE", `/v1/agents/${other.id}`],
    ] as const) {
      const body = method === "GET" || method === "DELETE" ? undefined : { value: "v", description: "x" };
      const problem = await expectProblem(await call(method, path, { headers: bearer(key), body }), 404, "not_found");
      expect(problem.detail, `${method} ${path}`).toBe(`agent ${other.id} not found`);
    }
    const list = await json(await call("GET", "/v1/agents", { headers: bearer(key) }));
    expect(list.agents.map((a: { id: string }) => a.id)).toEqual([mine.id]);
    await expectProblem(
      await call("POST", "/v1/agents", { headers: bearer(key), body: { name: "sneaky" } }),
      403,
      "forbidden",
    );
    expect((await call("GET", `/v1/agents/${other.id}`, { headers: user.headers })).status).toBe(200);
  });

  it("answers unknown, malformed, expired and revoked keys with the one 401 invalid_api_key", async () => {
    const user = await newUser();
    const { id, key } = await createKey(user.headers, { name: "short", scopes: ["agents:read"], expiresInDays: 1 });
    const forged = `whk_${"A".repeat(49)}`;
    const flipped = key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
    const wrongChecksumAccepted = await call("GET", "/v1/agents", { headers: bearer(flipped) });
    await expectProblem(wrongChecksumAccepted, 401, "invalid_api_key");
    await expectProblem(await call("GET", "/v1/agents", { headers: bearer(forged) }), 401, "invalid_api_key");
    // Well formed (the checksum holds) but never issued.
    const { generateApiKey } = await import("../src/auth/api-key-format");
    await expectProblem(await call("GET", "/v1/agents", { headers: bearer(generateApiKey()) }), 401, "invalid_api_key");
    // Expired before first use.
    await env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?")
      .bind(Date.now() - 1, id)
      .run();
    const expired = await expectProblem(
      await call("GET", "/v1/agents", { headers: bearer(key) }),
      401,
      "invalid_api_key",
    );
    expect(expired.detail).toBe("the API key is unknown, expired or revoked");
  });

  it("stops a cached key at its expiry, not at the end of its cache minute", async () => {
    const user = await newUser();
    const { id, key } = await createKey(user.headers, { name: "cached", scopes: ["agents:read"], expiresInDays: 1 });
    const row = await env.DB.prepare("SELECT expires_at AS e FROM api_keys WHERE id = ?")
      .bind(id)
      .first<{ e: number }>();
    const now = row!.e - 1000;
    await verifyApiKey({ db }, key, { now }); // cached now
    await expect(verifyApiKey({ db }, key, { now: row!.e })).rejects.toMatchObject({ code: "invalid_api_key" });
    expect(API_KEY_CACHE_TTL_MS).toBeLessThanOrEqual(60_000);
  });

  it("revokes at once in the isolate that revoked it, even with the key cached; audited; other users cannot", async () => {
    const user = await newUser();
    const stranger = await newUser();
    const { id, key } = await createKey(user.headers, { name: "ci", scopes: ["agents:read"] });
    expect((await call("GET", "/v1/agents", { headers: bearer(key) })).status).toBe(200); // now cached
    await expectProblem(await call("DELETE", `/v1/api-keys/${id}`, { headers: stranger.headers }), 404, "not_found");
    expect((await call("GET", "/v1/agents", { headers: bearer(key) })).status).toBe(200);
    const revoke = await call("DELETE", `/v1/api-keys/${id}`, { headers: user.headers });
    expect(revoke.status).toBe(204);
    await expectProblem(await call("GET", "/v1/agents", { headers: bearer(key) }), 401, "invalid_api_key");
    await expectProblem(await call("DELETE", `/v1/api-keys/${id}`, { headers: user.headers }), 404, "not_found");
    const list = await json(await call("GET", "/v1/api-keys", { headers: user.headers }));
    expect(list.apiKeys).toEqual([]);
    const userId = await userIdOf(user.subject);
    const audit = await env.DB.prepare("SELECT action FROM audit_log WHERE user_id = ? AND target_id = ? ORDER BY id")
      .bind(userId, id)
      .all<{ action: string }>();
    expect(audit.results.map((r) => r.action)).toEqual(["api_key.created", "api_key.revoked"]);
  });

  it("does not let a key mint, list or revoke keys, whatever its scopes", async () => {
    const user = await newUser();
    const { id, key } = await createKey(user.headers, { name: "all", scopes: ALL_SCOPES });
    const body = { name: "child", scopes: ["invoke"] };
    const problem = await expectProblem(
      await call("POST", "/v1/api-keys", { headers: bearer(key), body }),
      403,
      "user_token_required",
    );
    expect(problem.detail).toContain("not an API key");
    await expectProblem(await call("GET", "/v1/api-keys", { headers: bearer(key) }), 403, "user_token_required");
    await expectProblem(
      await call("DELETE", `/v1/api-keys/${id}`, { headers: bearer(key) }),
      403,
      "user_token_required",
    );
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM api_keys WHERE user_id = ?")
      .bind(await userIdOf(user.subject))
      .first<{ n: number }>();
    expect(rows?.n).toBe(1);
  });

  it("refuses bad key requests with 400s naming the field", async () => {
    const user = await newUser();
    const theirs = await createAgent((await newUser()).headers);
    for (const [body, location] of [
      [{ name: "x", scopes: ["admin"] }, "body.scopes.0"],
      [{ name: "x", scopes: [] }, "body.scopes"],
      [{ name: "x", scopes: ["invoke"], expiresInDays: 0 }, "body.expiresInDays"],
      [{ name: "x", scopes: ["invoke"], expiresInDays: 366 }, "body.expiresInDays"],
      [{ name: "", scopes: ["invoke"] }, "body.name"],
      [{ name: "x", scopes: ["invoke"], agentIds: [theirs.id] }, "body.agentIds"],
    ] as const) {
      const problem = await expectProblem(
        await call("POST", "/v1/api-keys", { headers: user.headers, body }),
        400,
        "validation_failed",
      );
      expect(
        problem.errors.map((e: { location: string }) => e.location),
        JSON.stringify(body),
      ).toContain(location);
    }
  });
});
