// Tenant isolation as data: runs tests/helpers/authz-matrix.ts (every route × owner, another
// user, no credentials, a malformed token, the owner's read-only API key and a key restricted to
// another agent) against real objects, and keeps the matrix complete.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ACTORS, type Actor, AUTHZ_MATRIX, KEY_ACTORS, makeMatrixWorld, methodOf } from "./helpers/authz-matrix";
import { createAgent } from "./helpers/deploy-flow";
import { call } from "./helpers/http";
import { servedRoutes } from "./helpers/routes";
import { tenantState } from "./helpers/state";

const PROBLEM_CODE_FOR_401: Partial<Record<Actor, string>> = {
  anonymous: "unauthenticated",
  malformedToken: "invalid_token",
};

describe("authorization matrix", () => {
  it("has a row for every route the app serves, and names no route it does not serve", () => {
    const inMatrix = new Set(AUTHZ_MATRIX.map((r) => r.route));
    const served = servedRoutes({ includeNonApi: true });
    expect(served.filter((r) => !inMatrix.has(r))).toEqual([]);
    expect([...inMatrix].filter((r) => !served.includes(r))).toEqual([]);
    expect(served).toContain("GET /healthz");
    expect(served).toContain("DELETE /v1/agents/{agentId}");
  });

  it("answers every caller on every route as the matrix says; callers other than the owner change and learn nothing", async () => {
    const { world, headers } = await makeMatrixWorld();
    const before = await tenantState(world.userId);
    const ownerIds = [
      world.agentId,
      world.activeDeploymentId,
      world.previousDeploymentId,
      world.userId,
      world.webhookId,
    ];
    const mismatches: string[] = [];

    // ACTORS puts the owner last: the owner's destructive calls must not hide what others could do.
    for (const actor of ACTORS) {
      for (const row of AUTHZ_MATRIX) {
        const req = await row.request(world);
        const label = `${actor} ${row.route}${row.variant ? ` (${row.variant})` : ""}`;
        const res = await call(methodOf(row), req.path, {
          headers: { ...headers[actor], ...req.headers },
          body: req.body,
          rawBody: req.rawBody,
        });
        const text = await res.text();
        const want = row.expect[actor];
        if (res.status !== want) {
          mismatches.push(`${label}: expected ${want}, got ${res.status} ${text.slice(0, 200)}`);
          continue;
        }
        if (res.status >= 400) {
          const ct = res.headers.get("content-type") ?? "";
          const problem = ct.startsWith("application/problem+json") ? JSON.parse(text) : null;
          if (!problem || problem.requestId !== res.headers.get("x-request-id")) {
            mismatches.push(`${label}: ${res.status} is not a problem+json with the request id`);
          } else if (res.status === 404 && problem.code !== "not_found") {
            mismatches.push(`${label}: 404 with code ${problem.code}`);
          } else if (
            res.status === 403 &&
            KEY_ACTORS.includes(actor) &&
            !["insufficient_scope", "user_token_required", "forbidden"].includes(problem.code)
          ) {
            mismatches.push(`${label}: 403 with code ${problem.code}`);
          } else if (
            res.status === 401 &&
            PROBLEM_CODE_FOR_401[actor] &&
            problem.code !== PROBLEM_CODE_FOR_401[actor]
          ) {
            if (!row.route.includes("/telemetry/")) mismatches.push(`${label}: 401 with code ${problem.code}`);
          }
        }
        // A success for another caller is about their own data: nothing of the owner's in it.
        if (actor === "otherUser" && res.status < 300 && !row.route.includes("/telemetry/")) {
          for (const id of ownerIds) if (text.includes(id)) mismatches.push(`${label}: response reveals ${id}`);
        }
        // A key restricted to another agent learns nothing of this one (its list is filtered).
        if (actor === "keyOtherAgent" && res.status < 300 && !row.route.includes("/telemetry/")) {
          for (const id of ownerIds.slice(0, 3)) {
            if (text.includes(id)) mismatches.push(`${label}: response reveals ${id}`);
          }
        }
      }
      if (actor !== "owner") {
        expect(await tenantState(world.userId), `after ${actor} ran the matrix`).toEqual(before);
      }
    }
    expect(mismatches).toEqual([]);

    // The owner's run really did act: the secret is gone and the agent deleted.
    expect((await call("GET", `/v1/agents/${world.agentId}`, { headers: headers.owner })).status).toBe(404);
    const after = await tenantState(world.userId);
    expect(after.secrets).toEqual([]);
    // The world's agent (deleted), the one the owner's POST made, and the key-restricted one.
    expect(after.agents).toHaveLength(3);
    expect(after.apiKeys.find((k) => k.id === world.spareKeyId)?.revoked_at).not.toBeNull();
    expect(after.webhooks.map((w) => w.id)).not.toContain(world.webhookId);
  });

  it("lets another user reach none of the owner's deployments through their own agent's paths", async () => {
    const { world, headers } = await makeMatrixWorld();
    const theirs = await createAgent(headers.otherUser);
    const before = await tenantState(world.userId);
    for (const [method, path] of [
      ["GET", `/v1/agents/${theirs.id}/deployments/${world.activeDeploymentId}`],
      ["POST", `/v1/agents/${theirs.id}/deployments/${world.previousDeploymentId}/activate`],
      ["GET", `/v1/metrics/recent?agentId=${world.agentId}`],
      ["DELETE", `/v1/agents/${theirs.id}/secrets/${world.secretName}`],
    ] as const) {
      const res = await call(method, path, { headers: headers.otherUser });
      expect(res.status, `${method} ${path}`).toBe(404);
    }
    expect(await tenantState(world.userId)).toEqual(before);
    const theirRow = await env.DB.prepare("SELECT active_deployment_id AS p FROM agents WHERE id = ?")
      .bind(theirs.id)
      .first<{ p: string | null }>();
    expect(theirRow?.p).toBeNull();
  });
});
