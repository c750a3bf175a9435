// `npm run measure:host-hop [-- --runs N]`: what the agent host's process hop
// (DISPATCH_MODE=host, docs/local-isolation.md) adds to an invocation. Starts two fresh gateways
// side by side (scripts/lib/dev-server.ts): one with the in-process Worker Loader, one with the
// agent host and its watchdog. In each, one agent (a small echo) is deployed; after a warm-up the
// two are invoked alternately, one call at a time, N times each (JSON, full answer read), so a
// busy machine slows both arms alike; min / p50 / p90 / p99 / max are printed with the difference. Request log lines are off (LOG_REQUESTS=errors) so wrangler's
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

/** A fresh gateway with one deployed echo agent; `call()` invokes it once and returns the time taken. */
async function arm(label, agentHost) {
  const { publicJwk, privateJwk } = await newSigningKey("hop");
  const issuer = `https://issuer.hop.test/${crypto.randomUUID()}`;
  const server = await startDevServer({
    vars: { AUTH_ISSUER: issuer, AUTH_JWKS: JSON.stringify({ keys: [publicJwk] }), LOG_REQUESTS: "errors" },
    agentHost,
  });
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
  return {
    server,
    async call() {
      const t = performance.now();
      const res = await api.request("POST", `/v1/invoke/${agentId}`, { body });
      await res.text();
      if (res.status !== 200) throw new Error(`invoke (${label}): ${res.status}`);
      return performance.now() - t;
    },
  };
}

const loaderArm = await arm("loader", false);
const hostArm = await arm("host", true);
const samples = { loader: [], host: [] };
try {
  for (let i = 0; i < WARMUP; i++) {
    await loaderArm.call();
    await hostArm.call();
  }
  for (let i = 0; i < RUNS; i++) {
    // Alternate which goes first, so neither arm always follows the other.
    if (i % 2 === 0) {
      samples.loader.push(await loaderArm.call());
      samples.host.push(await hostArm.call());
    } else {
      samples.host.push(await hostArm.call());
      samples.loader.push(await loaderArm.call());
    }
  }
} finally {
  await Promise.all([loaderArm.server.stop(), hostArm.server.stop()]);
}
const loader = summarize(samples.loader);
const host = summarize(samples.host);
console.log(`JSON invoke, ${RUNS} calls per arm, alternated, after ${WARMUP} warm-up (ms):`);
console.table({ "loader (in-process)": loader, "host (separate process)": host });
console.log(
  `hop cost: p50 +${(host.p50 - loader.p50).toFixed(2)} ms (${(host.p50 / loader.p50).toFixed(2)}x), ` +
    `p99 +${(host.p99 - loader.p99).toFixed(2)} ms (${(host.p99 / loader.p99).toFixed(2)}x)`,
);
