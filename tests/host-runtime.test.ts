// The gateway with DISPATCH_MODE=host against the agent host Worker (vitest.config.ts bundles
// src/agent-host/ as an auxiliary worker: a real RPC service binding, one process). What the
// process boundary, the watchdog and a stuck host do is tests/e2e/agent-host.e2e.test.ts's part.
// - an invocation cold-starts the deployment in the host: the host calls the gateway's
//   loadBundle back (artifact from R2, secrets decrypted), and the answer comes back;
// - the built-in template's signed telemetry event, sent through the host's TELEMETRY door,
//   lands in metrics_events for its own deployment (the bridge carried the identity);
// - a report for another deployment through that door is refused for its identity;
// - when the host is not reachable (its process is down or restarting), the caller gets
//   503 upstream_unavailable with Retry-After, not a 500 or a hang;
// - when the host is restarted under a runaway agent (a stand-in host that stalls and is then
//   killed, as the watchdog does), only the runaway's caller gets 504 upstream_timeout; another
//   agent's call in flight, and one queued behind the stall, are 502 upstream_error (the
//   platform's failure), measured as such, not as their agents' timeouts; a stream in flight ends
//   with an `error` event upstream_error, not upstream_exception.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { metricsEvents } from "../src/db/schema";
import { HostBridge } from "../src/entrypoints/host-bridge";
import worker from "../src/index";
import { HostCallLedger } from "../src/runtime/host/blame";
import type { AgentHostApi, HostInvokeTarget } from "../src/runtime/host/protocol";
import { callWithEnv, envWith } from "./helpers/app";
import { newUser } from "./helpers/auth";
import { createAgent, deployAndActivate, userMessage } from "./helpers/deploy-flow";
import { expectProblem } from "./helpers/http";
import { collectSse } from "./helpers/sse";
import { waitFor } from "./helpers/wait";

const HOST = { DISPATCH_MODE: "host" };

const WRONG_IDENTITY_AGENT = `export default {
  async fetch(request, env) {
    try {
      await env.TELEMETRY.report({ body: "{}", signature: "v1=" + "0".repeat(64), deploymentId: "dep_someone_else" });
      return Response.json({ output: { text: "accepted" } });
    } catch (err) {
      return Response.json({ output: { text: String(err.message) } });
    }
  },
};`;

async function telemetryRows(deploymentId: string) {
  return createDb(env.DB)
    .select()
    .from(metricsEvents)
    .where(and(eq(metricsEvents.deploymentId, deploymentId), eq(metricsEvents.source, "telemetry")));
}

/** The gateway's measurements of an agent's invocations (source gateway), once the usage queue stored them. */
async function gatewayRows(agentId: string, count: number) {
  return waitFor(
    async () => {
      const rows = await createDb(env.DB)
        .select()
        .from(metricsEvents)
        .where(and(eq(metricsEvents.agentId, agentId), eq(metricsEvents.source, "gateway")));
      return rows.length >= count ? rows : undefined;
    },
    { what: `the gateway's measurement of ${agentId}` },
  );
}

/**
 * A stand-in for the agent host's process as the gateway sees it over RPC: one thread, so once the
 * runaway's invocation starts, nothing sent after it runs (pings included) until kill(), which
 * loses every call in flight, and every stream it was sending, with the transport's error, as when
 * the watchdog kills the host; after that it is down (every call fails) until it is restarted.
 * The streamer answers at once with a stream that sends one delta, then waits for more.
 */
function stallingHost(opts: { runaway: string; streamer?: string; slowMs: number }) {
  let stuck = false;
  let down = false;
  const inFlight: Array<(err: Error) => void> = [];
  const lost = () => new Error("Network connection lost.");
  const call = <T>(work: (resolve: (value: T) => void) => void) =>
    new Promise<T>((resolve, reject) => {
      if (down) return reject(lost());
      inFlight.push(reject);
      if (!stuck) work(resolve);
    });
  // The stream fails by itself once the host is down: it belongs to whoever made the call (a
  // run's Durable Object), so the test's `kill` must not touch it from its own context.
  const stream = () =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`event: delta\ndata: {"text":"first"}\n\n`));
      },
      async pull(controller) {
        while (!down) await new Promise((r) => setTimeout(r, 20));
        controller.error(lost());
      },
    });
  const host: AgentHostApi = {
    ping: () => call((resolve) => resolve("pong")),
    deploy: () => call((resolve) => resolve({ ok: true })),
    invoke: (target: HostInvokeTarget) =>
      call<Response>((resolve) => {
        if (target.deploymentId === opts.runaway) {
          stuck = true; // while (true) {}
          return;
        }
        if (target.deploymentId === opts.streamer) {
          resolve(new Response(stream(), { headers: { "content-type": "text/event-stream" } }));
          return;
        }
        // An agent awaiting something slow: its answer can only come while the thread is free.
        setTimeout(() => {
          if (!stuck) resolve(Response.json({ output: { text: `answered by ${target.agentId}` } }));
        }, opts.slowMs);
      }),
  };
  return {
    host,
    kill() {
      stuck = false;
      down = true;
      for (const reject of inFlight.splice(0)) reject(lost());
    },
  };
}

describe("DISPATCH_MODE=host (the agent host over RPC)", () => {
  it("invokes the template through the host; its telemetry reaches the gateway for its own deployment", async () => {
    const { headers } = await newUser("host");
    const agent = await createAgent(headers);
    const deployment = await deployAndActivate(headers, agent.id);
    const res = await callWithEnv(HOST, "POST", `/v1/invoke/${agent.id}`, {
      headers,
      body: userMessage("hello through the host"),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { output: { text: string } };
    expect(body.output.text).toContain("hello through the host");
    const rows = await waitFor(async () => {
      const found = await telemetryRows(deployment.id);
      return found.length > 0 ? found : undefined;
    });
    expect(rows[0]).toMatchObject({ agentId: agent.id, deploymentId: deployment.id });
  });

  it("the host's TELEMETRY door carries the agent's identity: a report for another deployment is refused", async () => {
    const { headers } = await newUser("host-id");
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id, { moduleCode: WRONG_IDENTITY_AGENT });
    const res = await callWithEnv(HOST, "POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("x") });
    expect(res.status).toBe(200);
    const { output } = (await res.json()) as { output: { text: string } };
    expect(output.text).toMatch(/caller_identity/);
    expect(output.text).toMatch(/only report for its own deployment/);
  });

  it("a host that is down or restarting: 503 upstream_unavailable with Retry-After", async () => {
    const { headers } = await newUser("host-down");
    const agent = await createAgent(headers);
    await deployAndActivate(headers, agent.id);
    // What the dev registry's proxy throws when the host's process is gone (seen over HTTP in the e2e test).
    const gone = {
      deploy: () => Promise.reject(new Error("Network connection lost.")),
      invoke: () => Promise.reject(new Error("Network connection lost.")),
    };
    const res = await callWithEnv({ ...HOST, AGENT_HOST: gone }, "POST", `/v1/invoke/${agent.id}`, {
      headers,
      body: userMessage("x"),
    });
    expect(res.status, await res.clone().text()).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("upstream_unavailable");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("is refused in production: DISPATCH_MODE=host does not start, and the HostBridge door takes no identity there", async () => {
    const production = { ENVIRONMENT: "production", AUTH_AUDIENCE: "webhost-api" };
    await expectProblem(await callWithEnv({ ...production, ...HOST }, "GET", "/healthz"), 500, "configuration_error");
    const identity = { userId: "usr_x", agentId: "agt_x", deploymentId: "dep_x" };
    const bridge = new HostBridge(createExecutionContext(), { ...env, ...production });
    await expect(bridge.report(identity, {})).rejects.toThrow(/closed in production/);
    await expect(bridge.egress(identity, new Request("https://example.com/"))).rejects.toThrow(/closed in production/);
    await expect(bridge.storeLogs(identity, [])).rejects.toThrow(/closed in production/);
  });

  it("a host restarted under a runaway: only the runaway's call is 504 upstream_timeout; other agents' lost calls are the platform's 502", async () => {
    const { headers } = await newUser("host-restart");
    const [bystander, runaway, late] = [
      await createAgent(headers),
      await createAgent(headers),
      await createAgent(headers),
    ];
    await deployAndActivate(headers, bystander.id);
    const runawayDeployment = await deployAndActivate(headers, runaway.id);
    await deployAndActivate(headers, late.id);
    const timeoutMs = 2_000;
    const fake = stallingHost({ runaway: runawayDeployment.id, slowMs: 1_000 });
    const hostEnv = { ...HOST, AGENT_HOST: fake.host, INVOKE_TIMEOUT_MS: String(timeoutMs) };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const invoke = async (agentId: string, afterMs: number) => {
      await sleep(afterMs);
      const started = Date.now();
      const res = await callWithEnv(hostEnv, "POST", `/v1/invoke/${agentId}`, { headers, body: userMessage("x") });
      const body = (await res.json()) as { code?: string; detail?: string };
      return { status: res.status, body, ms: Date.now() - started };
    };
    // The bystander is in flight (awaiting something), then the runaway takes the thread, then a
    // third call queues behind the stall; the watchdog kills the host 1.2 s in.
    const calls = Promise.all([invoke(bystander.id, 0), invoke(runaway.id, 150), invoke(late.id, 450)]);
    await sleep(1_200);
    fake.kill();
    const [b, r, l] = await calls;

    expect(r.status, JSON.stringify(r.body)).toBe(504);
    expect(r.body.code).toBe("upstream_timeout");
    expect(r.ms).toBeGreaterThanOrEqual(timeoutMs - 100);
    for (const lost of [b, l]) {
      expect(lost.status, JSON.stringify(lost.body)).toBe(502);
      expect(lost.body.code).toBe("upstream_error");
      expect(lost.body.detail).toMatch(/^the platform failed to run this agent; quote ref req_/);
      // Answered when the host was lost, not held until the deadline like a timeout.
      expect(lost.ms).toBeLessThan(timeoutMs - 300);
    }
    // Metered as the platform's failure, not as the bystanders' timeouts.
    expect((await gatewayRows(bystander.id, 1)).map((e) => e.errorCode)).toEqual(["upstream_error"]);
    expect((await gatewayRows(late.id, 1)).map((e) => e.errorCode)).toEqual(["upstream_error"]);
    expect((await gatewayRows(runaway.id, 1)).map((e) => e.errorCode)).toEqual(["upstream_timeout"]);
  });

  it("a stream in flight when the host is restarted under a runaway ends with an upstream_error event, measured as the platform's", async () => {
    const { headers } = await newUser("host-restart-stream");
    const [streamer, runaway] = [await createAgent(headers), await createAgent(headers)];
    const streamerDeployment = await deployAndActivate(headers, streamer.id);
    const runawayDeployment = await deployAndActivate(headers, runaway.id);
    const timeoutMs = 3_000;
    const fake = stallingHost({ runaway: runawayDeployment.id, streamer: streamerDeployment.id, slowMs: 0 });
    const hostEnv = { ...HOST, AGENT_HOST: fake.host, INVOKE_TIMEOUT_MS: String(timeoutMs) };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    // Not callWithEnv: it waits for the request's waitUntil work, which here lasts as long as the stream.
    const ctx = createExecutionContext();
    const res = await worker.fetch(
      new Request(`http://gateway.test/v1/invoke/${streamer.id}/stream`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify(userMessage("x")),
      }),
      envWith(hostEnv),
      ctx,
    );
    expect(res.status).toBe(200);
    const events = collectSse(res);
    await sleep(100);
    const looping = callWithEnv(hostEnv, "POST", `/v1/invoke/${runaway.id}`, { headers, body: userMessage("x") });
    await sleep(1_000);
    const killedAt = Date.now();
    fake.kill();

    const got = await events;
    await waitOnExecutionContext(ctx);
    expect(got.map((e) => e.event)).toEqual(["delta", "error"]);
    expect(got[1]?.data).toEqual({ code: "upstream_error", message: "the platform failed to run this agent's stream" });
    expect(Date.now() - killedAt).toBeLessThan(timeoutMs - 500);
    const r = await looping;
    expect(r.status).toBe(504);
    expect((await gatewayRows(streamer.id, 1)).map((e) => e.errorCode)).toEqual(["upstream_error"]);
  });

  it("attribution: the last call sent before the first ping the host never answered; none when no ping stalled", () => {
    const ledger = new HostCallLedger();
    const never = () => new Promise<never>(() => {});
    const t0 = 1_000_000;
    const parked = ledger.begin(never, t0);
    // The host answered a ping after the parked call: it was free then.
    ledger.maybePing(() => Promise.resolve("pong"), t0 + 10);
    const runaway = ledger.begin(never, t0 + 20);
    ledger.maybePing(never, t0 + 300); // never answered: the host is stuck from here on
    const queued = ledger.begin(never, t0 + 400);
    const lostAt = t0 + 2_000;
    return Promise.resolve().then(() => {
      expect(ledger.blame(parked, lostAt)).toBe("platform");
      expect(ledger.blame(runaway, lostAt)).toBe("this_agent");
      expect(ledger.blame(queued, lostAt)).toBe("platform");

      // A host that went away while it answered pings (crashed, stopped): nobody's agent is to blame.
      const calm = new HostCallLedger();
      const only = calm.begin(never, t0);
      calm.maybePing(() => Promise.resolve("pong"), t0 + 300);
      return Promise.resolve().then(() => expect(calm.blame(only, t0 + 2_000)).toBe("platform"));
    });
  });
});
