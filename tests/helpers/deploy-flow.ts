// Helpers for tests that deploy and invoke agents through the HTTP API.
import { expect } from "vitest";
import { call, json } from "./http";
import { waitFor } from "./wait";

export type Headers = Record<string, string>;

export async function createAgent(headers: Headers, name = `agent-${crypto.randomUUID().slice(0, 8)}`) {
  const res = await call("POST", "/v1/agents", { headers, body: { name } });
  expect(res.status).toBe(201);
  return (await json(res)).agent as { id: string; name: string; activeDeploymentId: string | null };
}

export async function deploy(headers: Headers, agentId: string, body: Record<string, unknown> = {}) {
  const res = await call("POST", `/v1/agents/${agentId}/deploy`, { headers, body });
  if (res.status !== 202) throw new Error(`deploy answered ${res.status}: ${await res.text()}`);
  return (await json(res)).deployment as Deployment;
}

export type Deployment = {
  id: string;
  agentId: string;
  status: "deploying" | "ready" | "active" | "inactive" | "failed";
  errorMessage: string | null;
  activatedAt: number | null;
  moduleSha256: string;
  [key: string]: unknown;
};

export async function getDeployment(headers: Headers, agentId: string, deploymentId: string): Promise<Deployment> {
  const res = await call("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`, { headers });
  expect(res.status).toBe(200);
  return (await json(res)).deployment;
}

/** Polls the API until the deployment leaves `deploying` (the real queue consumer does the work). */
export async function waitUntilSettled(headers: Headers, agentId: string, deploymentId: string): Promise<Deployment> {
  return waitFor(
    async () => {
      const d = await getDeployment(headers, agentId, deploymentId);
      return d.status === "deploying" ? undefined : d;
    },
    { timeoutMs: 15_000, what: `deployment ${deploymentId} to settle` },
  );
}

export async function deployAndActivate(headers: Headers, agentId: string, body: Record<string, unknown> = {}) {
  const d = await deploy(headers, agentId, body);
  const settled = await waitUntilSettled(headers, agentId, d.id);
  if (settled.status !== "active") throw new Error(`deployment ended ${settled.status}: ${settled.errorMessage}`);
  return settled;
}

export const userMessage = (content: string) => ({ messages: [{ role: "user", content }] });

/** The internal user id (usr_…) the gateway created for a token subject. */
export async function userIdOf(subject: string): Promise<string> {
  const { env } = await import("cloudflare:workers");
  const row = await env.DB.prepare("SELECT id FROM users WHERE auth_subject = ?").bind(subject).first<{ id: string }>();
  if (!row) throw new Error(`no user for subject ${subject}`);
  return row.id;
}

/** The invariant: the agent's pointer names exactly the deployments with status active. */
export async function expectPointerInvariant(agentId: string): Promise<string | null> {
  const { env } = await import("cloudflare:workers");
  const agent = await env.DB.prepare("SELECT active_deployment_id AS p FROM agents WHERE id = ?")
    .bind(agentId)
    .first<{ p: string | null }>();
  const active = await env.DB.prepare("SELECT id FROM deployments WHERE agent_id = ? AND status = 'active'")
    .bind(agentId)
    .all<{ id: string }>();
  expect(active.results.map((r) => r.id)).toEqual(agent?.p ? [agent.p] : []);
  return agent?.p ?? null;
}
