// An agent deleted while one of its deployments is still `deploying`: the cleanup job may run
// before the upload, so the deploy job must remove the script it just made (no orphan left).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { getConfig } from "../src/env";
import type { RuntimeProvider } from "../src/runtime/types";
import { handleCleanupJob } from "../src/services/cleanup/cleanup";
import { createDeployment } from "../src/services/deployments/create";
import { processDeployJob } from "../src/services/deployments/deploy-job";
import { newUser } from "./helpers/auth";
import { createAgent, userIdOf } from "./helpers/deploy-flow";
import { call } from "./helpers/http";

function recordingRuntime() {
  const live = new Set<string>();
  const runtime: RuntimeProvider = {
    deploy: async (bundle) => {
      live.add(bundle.scriptName);
    },
    invoke: async () => new Response("unused"),
    remove: async (names) => {
      for (const n of names) live.delete(n);
    },
  };
  return { runtime, live };
}

describe("deleting an agent while it deploys", () => {
  it("leaves no script behind when the upload finishes after the agent's cleanup ran", async () => {
    const user = await newUser();
    const agent = await createAgent(user.headers);
    const userId = await userIdOf(user.subject);
    const db = createDb(env.DB);
    const { keyring, tierLimits } = await getConfig(env);
    const queued: unknown[] = [];
    const deployment = await createDeployment(
      {
        db,
        userId,
        keyring,
        tierLimits,
        artifacts: env.ARTIFACTS,
        queue: { send: async (m: unknown) => void queued.push(m) },
      },
      agent.id,
      {},
    );
    expect((await call("DELETE", `/v1/agents/${agent.id}`, { headers: user.headers })).status).toBe(204);
    const { runtime, live } = recordingRuntime();
    // The cleanup job runs first (nothing uploaded yet), then the deploy job uploads.
    await handleCleanupJob({ type: "cleanup_agent_scripts", userId, agentId: agent.id }, { db, runtime });
    const outcome = await processDeployJob(
      { db, keyring, runtime, artifacts: env.ARTIFACTS },
      { deploymentId: deployment.id },
      1,
    );
    expect(outcome).toEqual({ action: "ack", result: "inactive" });
    expect(live.size).toBe(0);
    const row = await env.DB.prepare("SELECT status, script_removed_at FROM deployments WHERE id = ?")
      .bind(deployment.id)
      .first<{ status: string; script_removed_at: number | null }>();
    expect(row?.status).toBe("inactive");
    expect(row?.script_removed_at).not.toBeNull();
  });
});
