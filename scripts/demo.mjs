// `npm run demo`: the whole product loop against the local gateway (started if it is not running
// on 127.0.0.1:$PORT, default 8787, and stopped afterwards): create an agent, deploy the built-in
// template, wait for it to go active, invoke it (JSON, then streaming with deltas printed as they
// arrive), show metrics and usage, set a secret and deploy a second version that reads it, roll
// back to the first, and show the usage all of it produced.
import { mintDevToken } from "./lib/dev-vars.ts";
import { httpClient } from "./lib/http-client.ts";
import { BASE, ensureServer, waitForDeployment } from "./lib/local-server.ts";
import { readJsonSse } from "./lib/sse.ts";

const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
let stepNo = 0;
const step = (title) => console.log(`\n${bold(`${++stepNo}. ${title}`)}`);
const show = (label, value) => console.log(`   ${label}: ${typeof value === "string" ? value : JSON.stringify(value)}`);

function expectStatus(res, expected, what) {
  if (res.status !== expected) throw new Error(`${what} answered ${res.status}: ${JSON.stringify(res.data)}`);
}

/**
 * The second version: a tiny hand-written agent that shouts the last user message back, streaming,
 * prefixed with the GREETING secret the demo sets (secrets reach a deployment as env values).
 */
const VERSION_TWO = `const enc = new TextEncoder();
export default {
  async fetch(req, env) {
    if (req.method !== "POST") return new Response("ok");
    const { messages } = await req.json();
    const shout = (messages.filter((m) => m.role === "user").at(-1)?.content ?? "").toUpperCase() + "!";
    const text = (env.GREETING ? env.GREETING + " " : "") + shout;
    const answer = { output: { text }, usage: { inputTokens: 0, outputTokens: text.split(/\\s+/).length } };
    if (!(req.headers.get("accept") ?? "").includes("text/event-stream")) return Response.json(answer);
    const words = text.match(/\\S+\\s*/g) ?? [text];
    return new Response(new ReadableStream({
      async start(c) {
        for (const w of words) { c.enqueue(enc.encode("event: delta\\ndata: " + JSON.stringify({ text: w }) + "\\n\\n")); await new Promise((r) => setTimeout(r, 40)); }
        c.enqueue(enc.encode("event: done\\ndata: " + JSON.stringify(answer) + "\\n\\n"));
        c.close();
      },
    }), { headers: { "content-type": "text/event-stream" } });
  },
};`;

async function streamInvoke(api, agentId, content) {
  const started = performance.now();
  const res = await api.request("POST", `/v1/invoke/${agentId}/stream`, {
    body: { messages: [{ role: "user", content }] },
  });
  if (res.status !== 200) throw new Error(`stream answered ${res.status}: ${await res.text()}`);
  show("deployment", res.headers.get("x-deployment-id"));
  process.stdout.write("   deltas: ");
  let first;
  for await (const e of readJsonSse(res)) {
    if (e.event === "delta") {
      first ??= performance.now() - started;
      process.stdout.write(`[${e.data.text}]`);
    } else {
      console.log();
      show(e.event, e.data);
    }
  }
  show("first event after", `${first?.toFixed(1)} ms`);
}

/** Waits (bounded) until `requests` invocations are metered — the usage queue batches — then prints the report. */
async function showUsage(api, requests) {
  let usage;
  const until = Date.now() + 15_000;
  do {
    usage = await api.json("GET", "/v1/usage/current");
    expectStatus(usage, 200, "usage");
    if (usage.data.usage.requests >= requests) break;
    await new Promise((r) => setTimeout(r, 250));
  } while (Date.now() < until);
  const { periodKey, tier, usage: totals, remaining, agents } = usage.data;
  show("period", `${periodKey} (${tier} plan)`);
  show("usage", totals);
  show("remaining", remaining);
  for (const a of agents) show(`agent ${a.name ?? a.agentId}`, a.usage);
}

async function main() {
  const stop = await ensureServer();
  try {
    const api = httpClient({ baseUrl: BASE, token: await mintDevToken(`demo-${Date.now()}`) });

    step("Create an agent");
    const created = await api.json("POST", "/v1/agents", { name: `demo-${Date.now()}`, description: "npm run demo" });
    expectStatus(created, 201, "create agent");
    const agent = created.data.agent;
    show("agent", { id: agent.id, name: agent.name, status: agent.status });

    step("Deploy the built-in template (no moduleCode)");
    let t = performance.now();
    const dep1 = await api.json("POST", `/v1/agents/${agent.id}/deploy`, {});
    expectStatus(dep1, 202, "deploy");
    show("deployment", { id: dep1.data.deployment.id, status: dep1.data.deployment.status });

    step("Wait until it is active (the queue consumer deploys it)");
    const v1 = await waitForDeployment(api, agent.id, dep1.data.deployment.id);
    show("status", v1.status === "active" ? `active after ${(performance.now() - t).toFixed(0)} ms` : v1.status);
    if (v1.status !== "active") throw new Error(`deployment ended ${v1.status}: ${v1.errorMessage}`);

    step("Invoke it (JSON)");
    t = performance.now();
    const inv = await api.json("POST", `/v1/invoke/${agent.id}`, {
      messages: [{ role: "user", content: "Hello from the demo" }],
      sessionId: "demo-session",
    });
    expectStatus(inv, 200, "invoke");
    show("answer", inv.data);
    show("x-deployment-id", inv.headers.get("x-deployment-id"));
    show("latency", `${(performance.now() - t).toFixed(1)} ms`);

    step("Invoke it streaming (SSE deltas print as they arrive)");
    await streamInvoke(api, agent.id, "streaming one word at a time from the edge");

    step("Recorded metrics and usage");
    // The gateway's measurements are metered in batches (usage queue) and the agent's telemetry
    // arrives after its answer: poll briefly until both invocations show up from both sources.
    let metrics;
    const until = Date.now() + 10_000;
    for (;;) {
      metrics = await api.json("GET", `/v1/metrics/recent?agentId=${agent.id}&limit=10`);
      const events = metrics.status === 200 ? (metrics.data.events ?? []) : [];
      const count = (source) => events.filter((e) => e.source === source).length;
      if (metrics.status !== 200 || (count("gateway") >= 2 && count("telemetry") >= 2) || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    if (metrics.status === 404 && metrics.data?.code === "route_not_found") {
      show("metrics", "GET /v1/metrics/recent is not available in this build (skipped)");
    } else {
      expectStatus(metrics, 200, "metrics");
      for (const e of metrics.data.events ?? []) {
        show("event", {
          source: e.source,
          status: e.status,
          durationMs: e.durationMs,
          streaming: e.streaming,
          ...(e.source === "telemetry"
            ? { usage: e.usage ?? { inputTokens: e.inputTokens, outputTokens: e.outputTokens } }
            : {}),
        });
      }
    }
    await showUsage(api, 2);

    step("Set a secret (write-only: the API lists names, never values)");
    const secret = await api.json("PUT", `/v1/agents/${agent.id}/secrets/GREETING`, { value: "Ahoy from a secret:" });
    expectStatus(secret, 201, "set secret");
    const names = await api.json("GET", `/v1/agents/${agent.id}/secrets`);
    show("secrets", names.data.secrets);

    step("Deploy a second version (custom moduleCode that reads the secret)");
    t = performance.now();
    const dep2 = await api.json("POST", `/v1/agents/${agent.id}/deploy`, { moduleCode: VERSION_TWO });
    expectStatus(dep2, 202, "deploy v2");
    const v2 = await waitForDeployment(api, agent.id, dep2.data.deployment.id);
    if (v2.status !== "active") throw new Error(`v2 ended ${v2.status}: ${v2.errorMessage}`);
    show("deployment", `${v2.id} active after ${(performance.now() - t).toFixed(0)} ms`);
    await streamInvoke(api, agent.id, "version two is louder");

    step("Roll back to the first deployment");
    const rb = await api.json("POST", `/v1/agents/${agent.id}/deployments/${v1.id}/activate`);
    expectStatus(rb, 200, "activate");
    show("active", { id: rb.data.deployment.id, status: rb.data.deployment.status });
    const after = await api.json("POST", `/v1/invoke/${agent.id}`, {
      messages: [{ role: "user", content: "back to v1" }],
    });
    expectStatus(after, 200, "invoke after rollback");
    show("answer", after.data.output);
    show("x-deployment-id", after.headers.get("x-deployment-id"));
    const list = await api.json("GET", `/v1/agents/${agent.id}/deployments`);
    for (const d of list.data.deployments) show("deployment", `${d.id} ${d.status}`);

    step("Usage this period (metered from the gateway's own measurements and verified telemetry)");
    await showUsage(api, 4);

    console.log(`\n${bold("Demo finished.")}`);
  } finally {
    await stop();
  }
}

main().catch((err) => {
  console.error(`\ndemo failed: ${err.message}`);
  process.exit(1);
});
