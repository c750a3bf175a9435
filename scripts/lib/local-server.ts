// The local gateway `npm run demo` and `npm run measure:latency` talk to: the one already running
// on 127.0.0.1:$PORT (default 8787) or $GATEWAY_URL, or else `npm run dev` started here in its
// own process group (launcher.ts) and stopped afterwards.

import { ensureDevVars } from "./dev-vars.ts";
import type { HttpClient } from "./http-client.ts";
import { launch, waitForHttp } from "./launcher.ts";
import { offlineEnv } from "./offline-env.ts";

export const PORT = process.env.PORT ?? "8787";
export const BASE = process.env.GATEWAY_URL ?? `http://127.0.0.1:${PORT}`;

async function healthy(): Promise<boolean> {
  try {
    const res = await fetch(`${BASE}/healthz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** Uses a running gateway at BASE, or starts one; returns a function that stops what it started. */
export async function ensureServer({ log = console.log } = {}): Promise<() => Promise<void>> {
  await ensureDevVars();
  if (await healthy()) {
    log(`Using the gateway already running at ${BASE}`);
    return async () => {};
  }
  if (process.env.GATEWAY_URL) throw new Error(`GATEWAY_URL=${BASE} does not answer /healthz`);
  log(`Starting the local gateway (npm run dev) on ${BASE} …`);
  const server = launch(process.execPath, ["scripts/dev.mjs"], { env: offlineEnv({ PORT }) });
  try {
    await waitForHttp(`${BASE}/healthz`, { launched: server, timeoutMs: 90_000, intervalMs: 250 });
  } catch (err) {
    await server.stop();
    throw new Error(`the dev server did not start (${(err as Error).message}):\n${server.output().slice(-3000)}`);
  }
  log(`Gateway is up at ${BASE}`);
  return () => server.stop();
}

/** Polls a deployment until it leaves `deploying`; returns it as last read. */
export async function waitForDeployment(
  api: HttpClient,
  agentId: string,
  deploymentId: string,
  { timeoutMs = 30_000, intervalMs = 20 } = {},
): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, data } = await api.json("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`);
    if (status !== 200) throw new Error(`reading deployment answered ${status}: ${JSON.stringify(data)}`);
    if (data.deployment.status !== "deploying") return data.deployment;
    if (Date.now() > deadline) throw new Error(`deployment ${deploymentId} still deploying after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
