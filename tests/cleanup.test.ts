// Removing scripts that are no longer needed: a deleted agent's (by tag, as a retried queue job)
// and old inactive deployments' beyond the retention count. Real D1, fake Cloudflare API.

import { env } from "cloudflare:workers";
import { eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { deployments } from "../src/db/schema";
import { getConfig } from "../src/env";
import { DeployQueueMessageSchema } from "../src/queues/deploy-jobs";
import type { RuntimeProvider } from "../src/runtime/types";
import {
  cleanupRetryDelaySeconds,
  enforceRetention,
  handleCleanupJob,
  processCleanupJob,
} from "../src/services/cleanup/cleanup";
import { makeBundle, namespaceSetup, seedAgent, seedDeployment, testDb } from "./helpers/namespace";

const db = testDb();

async function removedAt(ids: string[]) {
  const rows = await db
    .select({ id: deployments.id, scriptRemovedAt: deployments.scriptRemovedAt })
    .from(deployments)
    .where(inArray(deployments.id, ids));
  return Object.fromEntries(rows.map((r) => [r.id, r.scriptRemovedAt]));
}

/** Seeds an agent with deployments and uploads each deployment's script to the fake namespace. */
async function agentWithScripts(
  runtime: ReturnType<typeof namespaceSetup>["runtime"],
  statuses: Array<"active" | "inactive" | "failed">,
  opts: { deleted?: boolean } = {},
) {
  const seed = await seedAgent(db, opts);
  const base = Date.now() - 3_600_000;
  const rows = [];
  for (const [i, status] of statuses.entries()) {
    const row = await seedDeployment(db, seed, { status, at: base + i * 1000 });
    await runtime.deploy(
      makeBundle({ deploymentId: row.id, scriptName: row.scriptName, userId: seed.userId, agentId: seed.agentId }),
    );
    rows.push({ ...row, status });
  }
  return { seed, rows };
}

describe("queue job bodies", () => {
  it("still accepts a plain deploy body and tells typed jobs apart", () => {
    expect(DeployQueueMessageSchema.parse({ deploymentId: "dep_1" })).toEqual({ deploymentId: "dep_1" });
    expect(
      DeployQueueMessageSchema.parse({ type: "cleanup_agent_scripts", userId: "usr_1", agentId: "agt_1" }),
    ).toEqual({
      type: "cleanup_agent_scripts",
      userId: "usr_1",
      agentId: "agt_1",
    });
    expect(DeployQueueMessageSchema.safeParse({ type: "cleanup_agent_scripts", agentId: "agt_1" }).success).toBe(false);
    expect(DeployQueueMessageSchema.safeParse({ type: "unknown", deploymentId: "dep_1" }).success).toBe(false);
  });
});

describe("agent cleanup job", () => {
  it("deletes every script of a deleted agent by tag and marks its deployments removed", async () => {
    const { api, runtime } = namespaceSetup();
    const { seed, rows } = await agentWithScripts(runtime, ["inactive", "inactive", "active", "failed"], {
      deleted: true,
    });
    const bystander = await agentWithScripts(runtime, ["active"]);

    const outcome = await handleCleanupJob(
      { type: "cleanup_agent_scripts", userId: seed.userId, agentId: seed.agentId },
      { db, runtime },
    );
    expect(outcome).toMatchObject({ removedByTag: 4, removedRows: 4 });
    expect([...api.scripts.keys()]).toEqual([bystander.rows[0]?.scriptName]);
    const marks = await removedAt(rows.map((r) => r.id));
    for (const r of rows) expect(marks[r.id]).toEqual(expect.any(Number));
    expect((await removedAt([bystander.rows[0]!.id]))[bystander.rows[0]!.id]).toBeNull();
    const bulk = api.requests.filter((r) => r.method === "DELETE");
    expect(bulk.map((r) => new URLSearchParams(r.query).get("tags"))).toEqual([`agent-${seed.agentId}:yes`]);
  });

  it("refuses to touch the scripts of an agent that is not deleted", async () => {
    const { api, runtime } = namespaceSetup();
    const { seed, rows } = await agentWithScripts(runtime, ["active"]);
    const outcome = await handleCleanupJob(
      { type: "cleanup_agent_scripts", userId: seed.userId, agentId: seed.agentId },
      { db, runtime },
    );
    expect(outcome.skipped).toBe("agent_not_deleted");
    expect(api.scripts.has(rows[0]!.scriptName)).toBe(true);
  });

  it("removes by name through a runtime without tags (the loader mechanism)", async () => {
    const seed = await seedAgent(db, { deleted: true });
    const a = await seedDeployment(db, seed, { status: "inactive", at: Date.now() - 5000 });
    const b = await seedDeployment(db, seed, { status: "active", at: Date.now() - 4000 });
    const removed: string[][] = [];
    const runtime: RuntimeProvider = {
      deploy: async () => {},
      invoke: async () => new Response(null),
      remove: async (names) => {
        removed.push(names);
      },
    };
    await handleCleanupJob(
      { type: "cleanup_agent_scripts", userId: seed.userId, agentId: seed.agentId },
      { db, runtime },
    );
    expect(removed.flat().sort()).toEqual([a.scriptName, b.scriptName].sort());
  });

  it("acks the message when the scripts are gone", async () => {
    const { runtime } = namespaceSetup();
    const { seed } = await agentWithScripts(runtime, ["active"], { deleted: true });
    const outcome = await processCleanupJob(
      { db, runtime },
      { type: "cleanup_agent_scripts", userId: seed.userId, agentId: seed.agentId },
      1,
    );
    expect(outcome).toMatchObject({ action: "ack", result: "removed", removedRows: 1 });
  });

  it("retries with backoff while Cloudflare answers with a retryable error, then succeeds", async () => {
    const { api, runtime } = namespaceSetup();
    const { seed, rows } = await agentWithScripts(runtime, ["inactive", "active"], { deleted: true });
    const job = { type: "cleanup_agent_scripts" as const, userId: seed.userId, agentId: seed.agentId };

    api.inject({ method: "DELETE", status: 503, errors: [{ code: 10013, message: "service unavailable" }] });
    const first = await processCleanupJob({ db, runtime }, job, 1);
    expect(first).toMatchObject({ action: "retry", delaySeconds: cleanupRetryDelaySeconds(1) });
    expect(api.scripts.has(rows[0]!.scriptName)).toBe(true);
    expect((await removedAt([rows[0]!.id]))[rows[0]!.id]).toBeNull();

    const second = await processCleanupJob({ db, runtime }, job, 2);
    expect(second).toMatchObject({ action: "ack", result: "removed" });
    expect(api.scripts.has(rows[0]!.scriptName)).toBe(false);
  });

  it("gives up (acks, with the error) when Cloudflare answers with a permanent error", async () => {
    const { api, runtime } = namespaceSetup();
    const { seed } = await agentWithScripts(runtime, ["active"], { deleted: true });
    api.inject({ method: "DELETE", status: 403, errors: [{ code: 10000, message: "Authentication error" }] });
    const outcome = await processCleanupJob(
      { db, runtime },
      { type: "cleanup_agent_scripts", userId: seed.userId, agentId: seed.agentId },
      1,
    );
    expect(outcome).toMatchObject({ action: "ack", result: "failed" });
    expect(outcome.error).toContain("Authentication error");
  });

  it("backs off exponentially up to five minutes", () => {
    expect([1, 2, 3, 4, 10].map(cleanupRetryDelaySeconds)).toEqual([10, 20, 40, 80, 300]);
  });
});

describe("retention", () => {
  it("keeps the newest N inactive deployments' scripts and removes older inactive and failed ones", async () => {
    const { api, runtime } = namespaceSetup();
    const statuses = [
      "inactive",
      "failed",
      "inactive",
      "inactive",
      "inactive",
      "failed",
      "inactive",
      "active",
    ] as const;
    const { seed, rows } = await agentWithScripts(runtime, [...statuses]);
    const inactive = rows.filter((r) => r.status === "inactive"); // oldest first
    const failed = rows.filter((r) => r.status === "failed");
    const active = rows.filter((r) => r.status === "active");

    const report = await enforceRetention({ db, runtime }, { keep: 3, agentId: seed.agentId });

    const expectedRemoved = [...inactive.slice(0, 2), ...failed].map((r) => r.id).sort();
    expect([...report.removed].sort()).toEqual(expectedRemoved);
    expect(report.failed).toBeUndefined();
    for (const r of [...inactive.slice(2), ...active]) expect(api.scripts.has(r.scriptName)).toBe(true);
    for (const r of [...inactive.slice(0, 2), ...failed]) expect(api.scripts.has(r.scriptName)).toBe(false);
    const marks = await removedAt(rows.map((r) => r.id));
    for (const r of rows) {
      if (expectedRemoved.includes(r.id)) expect(marks[r.id]).toEqual(expect.any(Number));
      else expect(marks[r.id]).toBeNull();
    }

    // A second run has nothing left to do.
    expect((await enforceRetention({ db, runtime }, { keep: 3, agentId: seed.agentId })).removed).toEqual([]);
  });

  it("ranks inactive deployments by when they were last active, so a rolled-back-to one is kept", async () => {
    const { api, runtime } = namespaceSetup();
    const seed = await seedAgent(db);
    const t = Date.now() - 3_600_000;
    // Created first but active most recently (a rollback target that was used last).
    const old = await seedDeployment(db, seed, { status: "inactive", at: t, activatedAt: t + 50_000 });
    const mid = await seedDeployment(db, seed, { status: "inactive", at: t + 10_000 });
    const newer = await seedDeployment(db, seed, { status: "inactive", at: t + 20_000 });
    for (const r of [old, mid, newer]) {
      await runtime.deploy(makeBundle({ deploymentId: r.id, scriptName: r.scriptName, agentId: seed.agentId }));
    }
    const report = await enforceRetention({ db, runtime }, { keep: 2, agentId: seed.agentId });
    expect(report.removed).toEqual([mid.id]);
    expect(api.scripts.has(old.scriptName)).toBe(true);
  });

  it("counts ready deployments (manual releases) with the inactive ones: the newest keep their scripts, older lose them", async () => {
    const { api, runtime } = namespaceSetup();
    const seed = await seedAgent(db);
    const t = Date.now() - 3_600_000;
    const oldReady = await seedDeployment(db, seed, { status: "ready", at: t });
    const inactive = await seedDeployment(db, seed, { status: "inactive", at: t + 10_000 });
    const newReady = await seedDeployment(db, seed, { status: "ready", at: t + 20_000 });
    for (const r of [oldReady, inactive, newReady]) {
      await runtime.deploy(makeBundle({ deploymentId: r.id, scriptName: r.scriptName, agentId: seed.agentId }));
    }
    const report = await enforceRetention({ db, runtime }, { keep: 2, agentId: seed.agentId });
    expect(report.removed).toEqual([oldReady.id]);
    expect(api.scripts.has(oldReady.scriptName)).toBe(false);
    expect(api.scripts.has(newReady.scriptName)).toBe(true);
    expect(api.scripts.has(inactive.scriptName)).toBe(true);
  });

  it("leaves a recently failed deployment alone for a grace period", async () => {
    const { runtime } = namespaceSetup();
    const seed = await seedAgent(db);
    const recent = await seedDeployment(db, seed, { status: "failed", at: Date.now() - 1000 });
    const report = await enforceRetention({ db, runtime }, { keep: 0, agentId: seed.agentId });
    expect(report.removed).not.toContain(recent.id);
  });

  it("releases its claim and stops when a removal fails, so the next run tries again", async () => {
    const { api, runtime } = namespaceSetup();
    const { seed, rows } = await agentWithScripts(runtime, ["inactive", "inactive", "active"]);
    api.inject({ method: "DELETE", status: 500, errors: [{ code: 10002, message: "internal error" }] });

    const report = await enforceRetention({ db, runtime }, { keep: 0, agentId: seed.agentId });
    expect(report.removed).toEqual([]);
    expect(report.failed).toMatchObject({ retryable: true });
    expect(Object.values(await removedAt(rows.map((r) => r.id)))).toEqual([null, null, null]);

    const again = await enforceRetention({ db, runtime }, { keep: 0, agentId: seed.agentId });
    expect([...again.removed].sort()).toEqual(
      rows
        .filter((r) => r.status === "inactive")
        .map((r) => r.id)
        .sort(),
    );
  });

  it("never removes the script of a deployment re-activated while the run is under way", async () => {
    const { api, runtime } = namespaceSetup();
    const { seed, rows } = await agentWithScripts(runtime, ["inactive", "inactive", "active"]);
    const [first, second] = rows as [(typeof rows)[0], (typeof rows)[0]];
    // While the first candidate's script is being deleted, a rollback activates the second one.
    const racing: RuntimeProvider = {
      ...runtime,
      remove: async (names) => {
        if (names.includes(first.scriptName)) {
          await db.update(deployments).set({ status: "active" }).where(eq(deployments.id, second.id));
        }
        await runtime.remove(names);
      },
    };
    const report = await enforceRetention({ db, runtime: racing }, { keep: 0, agentId: seed.agentId });
    expect(report.removed).toEqual([first.id]);
    expect(api.scripts.has(second.scriptName)).toBe(true);
    expect((await removedAt([second.id]))[second.id]).toBeNull();
  });

  it("reads only the deployments of agents it can act on: no query walks every inactive deployment", async () => {
    const { runtime } = namespaceSetup();
    // Agents at or under the retention count, and one over it.
    for (let i = 0; i < 3; i++) await agentWithScripts(runtime, ["inactive", "inactive", "active"]);
    const { rows } = await agentWithScripts(runtime, ["inactive", "inactive", "inactive", "failed", "active"]);

    // Every statement retention sends to D1, with its parameters.
    const seen: Array<{ sql: string; params: unknown[] }> = [];
    const recording = new Proxy(env.DB, {
      get(target, prop) {
        if (prop !== "prepare") return Reflect.get(target, prop, target);
        return (query: string) => {
          const entry = { sql: query, params: [] as unknown[] };
          seen.push(entry);
          const statement = target.prepare(query);
          return new Proxy(statement, {
            get(st, p) {
              if (p === "bind") {
                return (...params: unknown[]) => {
                  entry.params = params;
                  return st.bind(...params);
                };
              }
              const value = Reflect.get(st, p, st);
              return typeof value === "function" ? value.bind(st) : value;
            },
          });
        };
      },
    });
    const report = await enforceRetention({ db: createDb(recording), runtime }, { keep: 2 });
    expect(report.removed).toEqual(expect.arrayContaining([rows[0]!.id]));

    expect(seen.length).toBeGreaterThan(0);
    for (const { sql, params } of seen) {
      const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .bind(...params)
        .all<{ detail: string }>();
      for (const { detail } of results.filter((r) => /\bdeployments\b/.test(r.detail))) {
        // A read of deployments is a search by id, by agent, or through the index of deployments
        // that still have a script; never a scan, never a walk of every row of one status.
        expect(detail, sql).toMatch(/^SEARCH deployments USING/);
        expect(detail, sql).toMatch(/deployments_live_script_idx|agent_id=\?|id=\?/);
      }
    }
  });

  it("reads DEPLOYMENT_RETENTION with a default of 5, and refuses to run with an invalid value", async () => {
    expect((await getConfig({ ...env })).deploymentRetention).toBe(5);
    expect((await getConfig({ ...env, DEPLOYMENT_RETENTION: "12" })).deploymentRetention).toBe(12);
    expect((await getConfig({ ...env, DEPLOYMENT_RETENTION: "0" })).deploymentRetention).toBe(0);
    for (const bad of ["-1", "1.5", "lots"]) {
      await expect(getConfig({ ...env, DEPLOYMENT_RETENTION: bad })).rejects.toThrow(/DEPLOYMENT_RETENTION/);
    }
  });
});
