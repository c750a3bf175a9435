// `npm run measure:latency [-- --runs N]`: measures, against the local gateway (started like
// `npm run demo` does if it is not running on 127.0.0.1:$PORT), the latency a client sees for
//   - deploy to active: POST …/deploy until GET …/deployments/:id says active (polled every 5 ms),
//   - a JSON invoke of the template (POST /v1/invoke/:agentId, full answer read),
//   - the first SSE event of a streamed invoke (POST /v1/invoke/:agentId/stream),
// after a warm-up, and prints min / p50 / p90 / p99 / max in milliseconds. GET /healthz (no
// gateway work at all) is measured alongside as the floor that wrangler dev's local proxy adds.
import { mintDevToken } from "./lib/dev-vars.ts";
import { httpClient } from "./lib/http-client.ts";
import { BASE, ensureServer, waitForDeployment } from "./lib/local-server.ts";
import { readJsonSse } from "./lib/sse.ts";

const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(process.argv[runsArg + 1]) : 100;
const DEPLOY_RUNS = Math.max(5, Math.round(RUNS / 10));
const WARMUP = 10;

function summarize(name, samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
  return { name, n: s.length, min: s[0], p50: q(50), p90: q(90), p99: q(99), max: s.at(-1) };
}

async function main() {
  const stop = await ensureServer();
  try {
    const api = httpClient({ baseUrl: BASE, token: await mintDevToken(`latency-${Date.now()}`) });
    const created = await api.json("POST", "/v1/agents", { name: `latency-${Date.now()}` });
    if (created.status !== 201) throw new Error(`create agent: ${created.status}`);
    const agentId = created.data.agent.id;
    const body = { messages: [{ role: "user", content: "measure the latency of this message" }] };

    const deploySamples = [];
    for (let i = 0; i < DEPLOY_RUNS; i++) {
      const t = performance.now();
      const res = await api.json("POST", `/v1/agents/${agentId}/deploy`, {});
      if (res.status !== 202) throw new Error(`deploy: ${res.status} ${JSON.stringify(res.data)}`);
      const d = await waitForDeployment(api, agentId, res.data.deployment.id, { intervalMs: 5 });
      if (d.status !== "active") throw new Error(`deployment ended ${d.status}: ${d.errorMessage}`);
      deploySamples.push(performance.now() - t);
    }

    const invokeJson = async () => {
      const t = performance.now();
      const res = await api.request("POST", `/v1/invoke/${agentId}`, { body });
      await res.text();
      if (res.status !== 200) throw new Error(`invoke: ${res.status}`);
      return performance.now() - t;
    };
    const firstEvent = async () => {
      const t = performance.now();
      const res = await api.request("POST", `/v1/invoke/${agentId}/stream`, { body });
      if (res.status !== 200) throw new Error(`stream: ${res.status}`);
      let first;
      for await (const e of readJsonSse(res)) {
        first ??= performance.now() - t;
        if (e.event === "done" || e.event === "error") break;
      }
      return first;
    };

    const health = async () => {
      const t = performance.now();
      await (await fetch(`${BASE}/healthz`)).text();
      return performance.now() - t;
    };

    for (let i = 0; i < WARMUP; i++) {
      await health();
      await invokeJson();
      await firstEvent();
    }
    const healthSamples = [];
    const jsonSamples = [];
    const streamSamples = [];
    for (let i = 0; i < RUNS; i++) {
      healthSamples.push(await health());
      jsonSamples.push(await invokeJson());
      streamSamples.push(await firstEvent());
    }

    const rows = [
      summarize("GET /healthz (proxy floor)", healthSamples),
      summarize("deploy to active", deploySamples),
      summarize("invoke JSON (full answer)", jsonSamples),
      summarize("invoke stream (first event)", streamSamples),
    ];
    console.log(`\nLocal latency through the gateway at ${BASE} (ms)`);
    console.table(
      Object.fromEntries(
        rows.map(({ name, ...r }) => [
          name,
          Object.fromEntries(Object.entries(r).map(([k, v]) => [k, k === "n" ? v : Number(v.toFixed(1))])),
        ]),
      ),
    );
  } finally {
    await stop();
  }
}

main().catch((err) => {
  console.error(`measurement failed: ${err.message}`);
  process.exit(1);
});
