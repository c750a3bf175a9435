// Local isolation of agents' code (DISPATCH_MODE=host, docs/local-isolation.md), over HTTP: this
// file starts its own gateway with a 3 s invoke deadline plus the agent host and its watchdog
// (scripts/lib/dev-server.ts, `agentHost`), because the shared e2e server keeps the default 30 s.
// - an agent that loops forever in fetch gets 504 upstream_timeout within deadline + 2 s, while
//   /healthz, polled every ~100 ms throughout, answers every time in under 1 s;
// - another agent's call queued behind the stall is lost when the watchdog kills the host: 502
//   upstream_error (the platform failed to run it), answered then, not a 504 blamed on its agent;
// - the watchdog restarts the stuck host, and another agent then invokes normally; while the host
//   is down, invocations get 503 upstream_unavailable with Retry-After (never a hang, never 500);
// - a module that loops at its top level fails its deployment with the deploy check's message,
//   and the gateway keeps answering meanwhile;
// - stopping the dev server ends the host's process group and the watchdog.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, startDevServer } from "../../scripts/lib/dev-server.ts";
import { httpClient, type JsonAnswer } from "../../scripts/lib/http-client.ts";
import { mintToken, newSigningKey } from "../../scripts/lib/tokens.ts";

const INVOKE_TIMEOUT_MS = 3_000;

const ECHO_AGENT = `export default {
  async fetch(request, env) {
    const body = await request.json();
    return Response.json({ output: { text: "echo: " + body.messages.at(-1).content, deployment: env.DEPLOYMENT_ID } });
  },
};`;
const RUNAWAY_AGENT = `export default {
  async fetch(request) {
    await request.text();
    while (true) {}
  },
};`;
const TOP_LEVEL_LOOP = `while (true) {}
export default { fetch() { return new Response("never"); } };`;

let server: DevServer;
let client: ReturnType<typeof httpClient>;

beforeAll(async () => {
  const { publicJwk, privateJwk } = await newSigningKey("host-e2e");
  const issuer = `https://issuer.e2e.test/${crypto.randomUUID()}`;
  server = await startDevServer({
    vars: {
      AUTH_ISSUER: issuer,
      AUTH_JWKS: JSON.stringify({ keys: [publicJwk] }),
      INVOKE_TIMEOUT_MS: String(INVOKE_TIMEOUT_MS),
      // This file's one user deploys five agents.
      TIER_LIMITS: JSON.stringify({ free: { agents: 10 } }),
    },
    agentHost: { probeIntervalMs: 500, probeTimeoutMs: 1_000, failuresBeforeRestart: 2 },
  });
  const token = await mintToken(privateJwk, { subject: `e2e|host-${crypto.randomUUID().slice(0, 8)}`, issuer });
  client = httpClient({ baseUrl: server.baseUrl, token, timeoutMs: 30_000 });
}, 180_000);

afterAll(async () => {
  await server?.stop();
});

async function deploy(moduleCode: string): Promise<{ agentId: string; deploymentId: string }> {
  const created = await client.json("POST", "/v1/agents", { name: `host-${crypto.randomUUID().slice(0, 8)}` });
  expect(created.status, JSON.stringify(created.data)).toBe(201);
  const agentId = created.data.agent.id as string;
  const deployed = await client.json("POST", `/v1/agents/${agentId}/deploy`, { moduleCode });
  expect(deployed.status, JSON.stringify(deployed.data)).toBe(202);
  return { agentId, deploymentId: deployed.data.deployment.id as string };
}

async function settled(agentId: string, deploymentId: string, timeoutMs = 40_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { data } = await client.json("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`);
    const d = data.deployment as { status: string; errorMessage: string | null };
    if (d.status === "active" || d.status === "failed") return d;
    if (Date.now() > deadline) throw new Error(`deployment still ${d.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Polls /healthz every ~100 ms until stopped; returns each answer's status and duration. */
function pollHealth() {
  const samples: Array<{ status: number; ms: number }> = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const started = performance.now();
      let status = 0;
      try {
        const res = await fetch(`${server.baseUrl}/healthz`, { signal: AbortSignal.timeout(5_000) });
        await res.arrayBuffer();
        status = res.status;
      } catch {
        status = -1;
      }
      samples.push({ status, ms: performance.now() - started });
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return samples;
    },
  };
}

const say = (content: string) => ({ messages: [{ role: "user", content }] });

describe("agent host (DISPATCH_MODE=host)", () => {
  it("a runaway agent gets 504 within deadline + 2 s, /healthz stays under 1 s, and the watchdog brings the host back", async () => {
    const healthy = await deploy(ECHO_AGENT);
    const runaway = await deploy(RUNAWAY_AGENT);
    expect((await settled(healthy.agentId, healthy.deploymentId)).status).toBe("active");
    expect((await settled(runaway.agentId, runaway.deploymentId)).status).toBe("active");
    const warm = await client.json("POST", `/v1/invoke/${healthy.agentId}`, say("before"));
    expect(warm.status, JSON.stringify(warm.data)).toBe(200);
    const restartsBefore = server.agentHost?.restarts() ?? 0;

    const health = pollHealth();
    const started = performance.now();
    const looping = client.json("POST", `/v1/invoke/${runaway.agentId}`, say("loop"));
    // Another agent's call, queued behind the stall 1 s in, is in flight when the watchdog kills
    // the host (2–3.5 s in): that is the platform's failure, answered then, not its agent's timeout.
    await new Promise((r) => setTimeout(r, 1_000));
    const bystanderStarted = performance.now();
    const bystander = await client.json("POST", `/v1/invoke/${healthy.agentId}`, say("bystander"));
    expect(bystander.status, JSON.stringify(bystander.data)).toBe(502);
    expect(bystander.data.code).toBe("upstream_error");
    expect(bystander.data.detail).toMatch(/^the platform failed to run this agent/);
    expect(performance.now() - bystanderStarted).toBeLessThan(INVOKE_TIMEOUT_MS);

    const res = await looping;
    const elapsed = performance.now() - started;
    expect(res.status, JSON.stringify(res.data)).toBe(504);
    expect(res.data.code).toBe("upstream_timeout");
    expect(elapsed).toBeGreaterThanOrEqual(INVOKE_TIMEOUT_MS - 100);
    expect(elapsed).toBeLessThan(INVOKE_TIMEOUT_MS + 2_000);

    // While the host is stuck, then killed and restarting: every other answer is quick, and an
    // invocation is a 504 (stuck past its deadline), a 502 (lost with the host: the platform's
    // failure) or a 503 with Retry-After (down), never a hang or a 500.
    const seen: number[] = [];
    const recovered = Date.now() + 45_000;
    let answer: JsonAnswer;
    for (;;) {
      const t = performance.now();
      answer = await client.json("POST", `/v1/invoke/${healthy.agentId}`, say("after"));
      seen.push(answer.status);
      expect(performance.now() - t).toBeLessThan(INVOKE_TIMEOUT_MS + 2_000);
      if (answer.status === 200) break;
      expect([502, 503, 504], JSON.stringify(answer.data)).toContain(answer.status);
      if (answer.status === 502) expect(answer.data.code).toBe("upstream_error");
      if (answer.status === 503) {
        expect(answer.data.code).toBe("upstream_unavailable");
        expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
      }
      if (Date.now() > recovered) throw new Error(`the host did not come back: ${seen.join(",")}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const samples = await health.stop();

    expect(answer.data.output.text).toBe("echo: after");
    expect(server.agentHost?.restarts()).toBeGreaterThan(restartsBefore);
    expect(samples.length).toBeGreaterThan(20);
    const slow = samples.filter((s) => s.status !== 200 || s.ms >= 1_000);
    expect(slow, `slow or failed /healthz answers: ${JSON.stringify(slow)}`).toEqual([]);
  }, 120_000);

  it("a module that loops at its top level fails its deployment with a clear message; the gateway keeps answering", async () => {
    const health = pollHealth();
    const started = performance.now();
    const looping = await deploy(TOP_LEVEL_LOOP);
    const d = await settled(looping.agentId, looping.deploymentId, 60_000);
    const samples = await health.stop();
    expect(d.status).toBe("failed");
    // The deploy check's own deadline, or the watchdog restarting the host under it twice: either names the top level.
    expect(d.errorMessage).toMatch(/^the bundle's top-level code did not finish/);
    // The deploy check's deadline (10 s) plus its margin, plus the queue: not minutes.
    expect(performance.now() - started).toBeLessThan(40_000);
    const slow = samples.filter((s) => s.status !== 200 || s.ms >= 1_000);
    expect(slow, `slow or failed /healthz answers: ${JSON.stringify(slow)}`).toEqual([]);

    // Once the watchdog has replaced the stuck host, deploying and invoking work again.
    const next = await deploy(ECHO_AGENT);
    const deadline = Date.now() + 60_000;
    let status = (await settled(next.agentId, next.deploymentId, 60_000)).status;
    expect(status).toBe("active");
    for (;;) {
      const res = await client.json("POST", `/v1/invoke/${next.agentId}`, say("again"));
      if (res.status === 200) {
        expect(res.data.output.text).toBe("echo: again");
        break;
      }
      status = String(res.status);
      if (Date.now() > deadline) throw new Error(`no 200 after the top-level loop: last ${status}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }, 150_000);

  it("stopping the dev server ends the host's process group and the watchdog: no orphans", async () => {
    const host = server.agentHost;
    expect(host).toBeDefined();
    const hostGroup = host?.pid() ?? -1;
    const events = host?.events().length ?? 0;
    expect(alive(hostGroup)).toBe(true);
    await server.stop();
    // stop() resolves once the groups are gone; a moment more for the kernel to reap the last zombie.
    const gone = Date.now() + 2_000;
    while ((alive(hostGroup) || alive(server.pid)) && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
    expect(alive(hostGroup)).toBe(false);
    expect(alive(server.pid)).toBe(false);
    // The watchdog probes no more (it would log a probe failure and restart the host).
    await new Promise((r) => setTimeout(r, 2_500));
    expect(host?.events().length).toBe(events);
  }, 30_000);
});

/** Whether any process of the group still exists (signal 0 checks without signalling). */
function alive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
