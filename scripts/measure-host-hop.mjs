// `node scripts/measure-host-hop.mjs [--runs N]`: what the agent host's process hop
// (DISPATCH_MODE=host, docs/local-isolation.md) adds to an invocation. Starts two fresh gateways
// one after the other (scripts/lib/dev-server.ts): the in-process Worker Loader, then the gateway
// with the agent host and its watchdog. In each, one agent (a small echo) is deployed and invoked
// sequentially N times after a warm-up (JSON, full answer read), and min / p50 / p90 / p99 / max
// are printed with the difference. Request log lines are off (LOG_REQUESTS=errors) so wrangler's
// console relay does not drown the hop (bench/results/2026-12-01-log-modes.md).
import { startDevServer } from "./lib/dev-server.ts";
import { httpClient } from "./lib/http-client.ts";
import { mintToken, newSigningKey } from "./lib/tokens.ts";

const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(process.argv[runsArg + 1]) : 300;
const WARMUP = 30;

const ECHO = `export default {
  async fetch(request) {
    const body = await request.json();
    return Response.json({ output: { text: body.messages.at(-1).content } });
  },
};`;

function summarize(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
  const r = (x) => Math.round(x * 100) / 100;
  return { n: s.length, min: r(s[0]), p50: r(q(50)), p90: r(q(90)), p99: r(q(99)), max: r(s.at(-1)) };
}

async function measure(label, agentHost) {
  const { publicJwk, privateJwk } = await newSigningKey("hop");
  const issuer = `https://issuer.hop.test/${crypto.randomUUID()}`;
  const server = await startDevServer({
    vars: { AUTH_ISSUER: issuer, AUTH_JWKS: JSON.stringify({ keys: [publicJwk] }), LOG_REQUESTS: "errors" },
    agentHost,
  });
  try {
    const token = await mintToken(privateJwk, { subject: `hop|${label}`, issuer });
    const api = httpClient({ baseUrl: server.baseUrl, token });
    const created = await api.json("POST", "/v1/agents", { name: `hop-${label}` });
    if (created.status !== 201) throw new Error(`create agent: ${created.status}`);
    const agentId = created.data.agent.id;
    const deployed = await api.json("POST", `/v1/agents/${agentId}/deploy`, { moduleCode: ECHO });
    if (deployed.status !== 202) throw new Error(`deploy: ${deployed.status} ${JSON.stringify(deployed.data)}`);
    for (;;) {
      const { data } = await api.json("GET", `/v1/agents/${agentId}/deployments/${deployed.data.deployment.id}`);
      if (data.deployment.status === "active") break;
      if (data.deployment.status === "failed") throw new Error(`deploy failed: ${data.deployment.errorMessage}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const body = { messages: [{ role: "user", content: "measure the hop" }] };
    const once = async () => {
      const t = performance.now();
      const res = await api.request("POST", `/v1/invoke/${agentId}`, { body });
      await res.text();
      if (res.status !== 200) throw new Error(`invoke: ${res.status}`);
      return performance.now() - t;
    };
    for (let i = 0; i < WARMUP; i++) await once();
    const samples = [];
    for (let i = 0; i < RUNS; i++) samples.push(await once());
    return summarize(samples);
  } finally {
    await server.stop();
  }
}

const loader = await measure("loader", false);
const host = await measure("host", true);
console.log(`JSON invoke, ${RUNS} sequential calls after ${WARMUP} warm-up (ms):`);
console.table({ "loader (in-process)": loader, "host (separate process)": host });
console.log(
  `hop cost: p50 +${(host.p50 - loader.p50).toFixed(2)} ms (${(host.p50 / loader.p50).toFixed(2)}x), ` +
    `p99 +${(host.p99 - loader.p99).toFixed(2)} ms (${(host.p99 / loader.p99).toFixed(2)}x)`,
);
