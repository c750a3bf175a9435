import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { agentSecrets, auditLog } from "../src/db/schema";
import { getConfig } from "../src/env";
import { PLATFORM_BINDING_NAMES } from "../src/runtime/user-script";
import { recordAudit } from "../src/services/audit/audit";
import { loadAgentSecrets, MAX_SECRET_VALUE_BYTES, MAX_SECRETS_PER_AGENT } from "../src/services/secrets/secrets";
import { newUser } from "./helpers/auth";
import { db, userIdOf } from "./helpers/fixtures";
import { call, expectProblem, json } from "./helpers/http";
import { findPlaintextInD1 } from "./helpers/plaintext-scan";

type User = Awaited<ReturnType<typeof newUser>>;

async function newAgent(user: User): Promise<string> {
  const res = await call("POST", "/v1/agents", {
    headers: user.headers,
    body: { name: `s-${crypto.randomUUID().slice(0, 8)}` },
  });
  expect(res.status).toBe(201);
  return (await json(res)).agent.id;
}

const put = (user: User, agentId: string, name: string, body: unknown) =>
  call("PUT", `/v1/agents/${agentId}/secrets/${name}`, { headers: user.headers, body });

// Every value this file stores, for the final plaintext scan of D1.
const storedValues: string[] = [];
const secretValue = () => {
  const value = `sk-live-${crypto.randomUUID()}`;
  storedValues.push(value);
  return value;
};

async function keyring() {
  return (await getConfig(env)).keyring;
}

describe("secrets API", () => {
  it("creates, replaces, lists and deletes secrets without ever returning a value", async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    const v1 = secretValue();
    const v2 = secretValue();
    const v3 = secretValue();
    const texts: string[] = [];

    const created = await put(user, agentId, "OPENAI_API_KEY", { value: v1 });
    expect(created.status).toBe(201);
    const createdText = await created.text();
    texts.push(createdText);
    const createdBody = JSON.parse(createdText);
    expect(Object.keys(createdBody.secret).sort()).toEqual(["createdAt", "name", "updatedAt"]);
    expect(createdBody.secret.name).toBe("OPENAI_API_KEY");

    const replaced = await put(user, agentId, "OPENAI_API_KEY", { value: v2 });
    expect(replaced.status).toBe(200);
    const replacedText = await replaced.text();
    texts.push(replacedText);
    const replacedBody = JSON.parse(replacedText);
    expect(replacedBody.secret.createdAt).toBe(createdBody.secret.createdAt);
    expect(replacedBody.secret.updatedAt).toBeGreaterThanOrEqual(createdBody.secret.updatedAt);

    const second = await put(user, agentId, "DB_URL", { value: v3 });
    expect(second.status).toBe(201);
    texts.push(await second.text());

    const list = await call("GET", `/v1/agents/${agentId}/secrets`, { headers: user.headers });
    expect(list.status).toBe(200);
    const listText = await list.text();
    texts.push(listText);
    const listed = JSON.parse(listText).secrets;
    expect(listed.map((s: any) => s.name)).toEqual(["DB_URL", "OPENAI_API_KEY"]);
    for (const s of listed) expect(Object.keys(s).sort()).toEqual(["createdAt", "name", "updatedAt"]);

    expect(await loadAgentSecrets(db, await keyring(), { userId: await userIdOf(user), agentId })).toEqual({
      DB_URL: v3,
      OPENAI_API_KEY: v2,
    });

    const deleted = await call("DELETE", `/v1/agents/${agentId}/secrets/DB_URL`, { headers: user.headers });
    expect(deleted.status).toBe(204);
    const again = await call("DELETE", `/v1/agents/${agentId}/secrets/DB_URL`, { headers: user.headers });
    texts.push(JSON.stringify(await expectProblem(again, 404, "not_found")));
    const after = await json(await call("GET", `/v1/agents/${agentId}/secrets`, { headers: user.headers }));
    expect(after.secrets.map((s: any) => s.name)).toEqual(["OPENAI_API_KEY"]);

    const auditText = await (await call("GET", "/v1/audit", { headers: user.headers })).text();
    texts.push(auditText);
    const audit = JSON.parse(auditText).entries;
    const userId = await userIdOf(user);
    expect(audit.map((e: any) => [e.action, e.actor, e.targetType, e.targetId, e.details])).toEqual([
      ["secret.deleted", `user:${userId}`, "agent", agentId, { name: "DB_URL" }],
      ["secret.set", `user:${userId}`, "agent", agentId, { name: "DB_URL" }],
      ["secret.set", `user:${userId}`, "agent", agentId, { name: "OPENAI_API_KEY" }],
      ["secret.set", `user:${userId}`, "agent", agentId, { name: "OPENAI_API_KEY" }],
    ]);

    for (const text of texts) for (const v of [v1, v2, v3]) expect(text).not.toContain(v);
  });

  it("stores only an envelope under the current key, bound to the agent and name", async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    const value = secretValue();
    await put(user, agentId, "TOKEN", { value });
    const row = await db.select().from(agentSecrets).where(eq(agentSecrets.agentId, agentId)).get();
    const ring = await keyring();
    expect(row?.ciphertext.startsWith(`v1.${ring.current.id}.`)).toBe(true);
    expect(row?.ciphertext).not.toContain(value);
    expect(row?.ciphertext).not.toContain(btoa(value));
    const audits = await db.select().from(auditLog).where(eq(auditLog.targetId, agentId)).all();
    expect(JSON.stringify(audits)).not.toContain(value);
  });

  it("refuses bad names with a 400 listing the field", async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    for (const name of ["lower", "1ABC", "A-B", "A.B", `A${"B".repeat(64)}`, "%C3%89T%C3%89"]) {
      const problem = await expectProblem(await put(user, agentId, name, { value: "x" }), 400, "validation_failed");
      expect(problem.errors.map((e: any) => e.location)).toEqual(["path.name"]);
    }
    expect((await put(user, agentId, `A${"B".repeat(63)}`, { value: "x" })).status).toBe(201);
    expect((await put(user, agentId, "_UNDERSCORE_1", { value: "x" })).status).toBe(201);
  });

  it("refuses every name the platform injects itself", async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    for (const name of PLATFORM_BINDING_NAMES) {
      const problem = await expectProblem(await put(user, agentId, name, { value: "x" }), 400, "validation_failed");
      expect(problem.errors).toEqual([
        { location: "path.name", message: `${name} is set by the platform and cannot be a secret` },
      ]);
      await expectProblem(
        await call("DELETE", `/v1/agents/${agentId}/secrets/${name}`, { headers: user.headers }),
        400,
        "validation_failed",
      );
    }
    expect((await json(await call("GET", `/v1/agents/${agentId}/secrets`, { headers: user.headers }))).secrets).toEqual(
      [],
    );
  });

  it("limits the value to 1..5120 UTF-8 bytes and the body to { value: string }", async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    const bad: unknown[] = [
      {},
      { value: 5 },
      { value: null },
      { value: "" },
      { value: "x", extra: true },
      { value: "x".repeat(MAX_SECRET_VALUE_BYTES + 1) },
      { value: "é".repeat(MAX_SECRET_VALUE_BYTES / 2 + 1) }, // 2561 characters, 5122 bytes
    ];
    for (const body of bad) {
      const problem = await expectProblem(await put(user, agentId, "K", body), 400, "validation_failed");
      expect(problem.errors[0].location).toMatch(/^body\./);
      expect(JSON.stringify(problem)).not.toContain("xxxxxxxx");
    }
    expect((await put(user, agentId, "K", { value: "x".repeat(MAX_SECRET_VALUE_BYTES) })).status).toBe(201);
    expect((await put(user, agentId, "K", { value: "é".repeat(MAX_SECRET_VALUE_BYTES / 2) })).status).toBe(200);
    await expectProblem(
      await call("PUT", `/v1/agents/${agentId}/secrets/K`, {
        headers: { ...user.headers, "content-type": "application/json" },
        rawBody: '{"value": "unterminated',
      }),
      400,
      "malformed_json",
    );
  });

  it(`holds at most ${MAX_SECRETS_PER_AGENT} secrets per agent, even under concurrent writes`, async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    const names = Array.from({ length: MAX_SECRETS_PER_AGENT + 5 }, (_, i) => `S_${i}`);
    const results = await Promise.all(names.map((name) => put(user, agentId, name, { value: "v" })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(MAX_SECRETS_PER_AGENT);
    const refused = results.filter((r) => r.status === 409);
    expect(refused).toHaveLength(5);
    const problem = await expectProblem(refused[0]!, 409, "too_many_secrets");
    expect(problem.max).toBe(MAX_SECRETS_PER_AGENT);
    const listed = (await json(await call("GET", `/v1/agents/${agentId}/secrets`, { headers: user.headers }))).secrets;
    expect(listed).toHaveLength(MAX_SECRETS_PER_AGENT);
    // Replacing an existing name is still allowed at the limit; refused writes left no audit entry.
    const existing = listed[0].name;
    expect((await put(user, agentId, existing, { value: "w" })).status).toBe(200);
    const audit = await json(await call("GET", "/v1/audit?limit=200", { headers: user.headers }));
    expect(audit.entries.filter((e: any) => e.action === "secret.set")).toHaveLength(MAX_SECRETS_PER_AGENT + 1);
  });

  it("answers 404 for an unknown, deleted or malformed agent id", async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    await call("DELETE", `/v1/agents/${agentId}`, { headers: user.headers });
    for (const id of [agentId, "agt_00000000000000000000000000", "nope"]) {
      await expectProblem(await put(user, id, "K", { value: "v" }), 404, "not_found");
      await expectProblem(await call("GET", `/v1/agents/${id}/secrets`, { headers: user.headers }), 404, "not_found");
      await expectProblem(
        await call("DELETE", `/v1/agents/${id}/secrets/K`, { headers: user.headers }),
        404,
        "not_found",
      );
    }
  });

  it("requires authentication on every secrets route", async () => {
    for (const [method, path] of [
      ["GET", "/v1/agents/agt_00000000000000000000000000/secrets"],
      ["PUT", "/v1/agents/agt_00000000000000000000000000/secrets/K"],
      ["DELETE", "/v1/agents/agt_00000000000000000000000000/secrets/K"],
      ["GET", "/v1/audit"],
    ] as const) {
      await expectProblem(
        await call(method, path, { body: method === "PUT" ? { value: "v" } : undefined }),
        401,
        "unauthenticated",
      );
    }
  });
});

describe("secrets API tenant isolation", () => {
  it("lets another user neither list, set nor delete a user's secrets (404 everywhere)", async () => {
    const owner = await newUser("owner");
    const other = await newUser("other");
    const agentId = await newAgent(owner);
    const value = secretValue();
    await put(owner, agentId, "KEEP", { value });

    await expectProblem(
      await call("GET", `/v1/agents/${agentId}/secrets`, { headers: other.headers }),
      404,
      "not_found",
    );
    await expectProblem(await put(other, agentId, "KEEP", { value: "hijack" }), 404, "not_found");
    await expectProblem(await put(other, agentId, "NEW", { value: "x" }), 404, "not_found");
    await expectProblem(
      await call("DELETE", `/v1/agents/${agentId}/secrets/KEEP`, { headers: other.headers }),
      404,
      "not_found",
    );

    expect(await loadAgentSecrets(db, await keyring(), { userId: await userIdOf(owner), agentId })).toEqual({
      KEEP: value,
    });
    expect((await json(await call("GET", "/v1/audit", { headers: other.headers }))).entries).toEqual([]);
    const ownerAudit = (await json(await call("GET", "/v1/audit", { headers: owner.headers }))).entries;
    expect(ownerAudit.map((e: any) => e.action)).toEqual(["secret.set"]);
  });
});

describe("audit log", () => {
  it("pages the caller's entries newest first and validates limit", async () => {
    const user = await newUser();
    const agentId = await newAgent(user);
    for (const name of ["A1", "A2", "A3", "A4", "A5"]) await put(user, agentId, name, { value: "v" });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const qs: string = cursor ? `?limit=2&cursor=${cursor}` : "?limit=2";
      const page = await json(await call("GET", `/v1/audit${qs}`, { headers: user.headers }));
      expect(page.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page.entries.map((e: any) => e.details.name));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(["A5", "A4", "A3", "A2", "A1"]);
    for (const limit of ["0", "201", "x"]) {
      await expectProblem(
        await call("GET", `/v1/audit?limit=${limit}`, { headers: user.headers }),
        400,
        "validation_failed",
      );
    }
    await expectProblem(await call("GET", "/v1/audit?cursor=bad!", { headers: user.headers }), 400, "invalid_cursor");
  });

  it("writes an audit row together with its change or not at all", async () => {
    const user = await newUser();
    const userId = await userIdOf(user);
    const entry = {
      userId,
      actor: `user:${userId}`,
      action: "secret.set" as const,
      targetType: "agent" as const,
      targetId: "agt_00000000000000000000000000",
      details: { name: "X" },
    };
    // The second statement violates a foreign key: the batch rolls back, audit row included.
    await expect(
      db.batch([
        recordAudit(db, entry),
        db.insert(agentSecrets).values({
          id: "sec_00000000000000000000000000",
          userId,
          agentId: "agt_doesnotexist0000000000000000",
          name: "X",
          ciphertext: "v1.x.y.z",
          createdAt: 1,
          updatedAt: 1,
        }),
      ]),
    ).rejects.toThrow();
    expect(await db.select().from(auditLog).where(eq(auditLog.userId, userId)).all()).toEqual([]);
    await recordAudit(db, entry);
    expect(await db.select().from(auditLog).where(eq(auditLog.userId, userId)).all()).toHaveLength(1);
  });
});

describe("at rest", () => {
  it("leaves no secret value in plaintext in any text column of any table", async () => {
    expect(storedValues.length).toBeGreaterThan(3);
    expect(await findPlaintextInD1(storedValues)).toEqual([]);
    // The scan itself finds what is there: a known plaintext (an agent name) is found.
    const user = await newUser();
    const marker = `marker-${crypto.randomUUID().slice(0, 8)}`;
    await call("POST", "/v1/agents", { headers: user.headers, body: { name: marker } });
    expect(await findPlaintextInD1([marker])).toEqual([`agents.name holds ${JSON.stringify(marker.slice(0, 12))}…`]);
  });
});
