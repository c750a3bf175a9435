// `npm run bench:scale [-- --sizes 1,10,100 --requests 40]`: B8, cost as data grows. For each size
// (percent of 10,000 users / 100,000 agents / 100,000 deployments / 1,000,000 metrics events over
// 30 days) it starts its own `wrangler dev` (the bench entry, so D1 statements are counted and
// timed; `--test-scheduled` so the cron can be run on demand) on a fresh local D1 filled by
// scripts/lib/scale-data.ts before the server opens it, makes one agent and deployment through the
// API, and measures:
//   - p50 of each API route (sequential requests, after a warm-up): list agents, list deployments
//     of a busy agent, metrics/recent of a busy and of a quiet agent, usage/current, an invocation;
//   - three cron runs (GET /__scheduled): each run's wall time, its slowest single D1 statement,
//     and the worst wait of API requests (GET /v1/agents, one after another) made while it ran.
// Goals: every route's p50 at the largest size ≤ 1.5× its p50 at the smallest; the worst API wait
// during a cron run at 100% under 250 ms. Prints a table and writes bench/results/<timestamp>-b8.json.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT, startDevServer } from "./lib/dev-server.ts";
import { httpClient } from "./lib/http-client.ts";
import { fillScaleData } from "./lib/scale-data.ts";
import { mintToken, newSigningKey } from "./lib/tokens.ts";

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const SIZES = String(arg("sizes", "1,10,100"))
  .split(",")
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0);
const REQUESTS = Number(arg("requests", 40));
const WARMUP = 5;
const CRON_RUNS = 3;
const GOALS = { routeRatio: 1.5, cronWaitMsAt100: 250 };
const ISSUER = "https://bench-scale.webhost.test";
const SUBJECT = "bench-scale-user";
const AGENT_MODULE = `export default { async fetch(request) {
  if (request.method !== "POST") return Response.json({ ok: true });
  const body = await request.json();
  const text = body.messages?.at(-1)?.content ?? "";
  return Response.json({ output: { text }, usage: { inputTokens: 1, outputTokens: 1 } });
} };`;
const INVOKE_BODY = { messages: [{ role: "user", content: "hello" }] };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const percentile = (samples, p) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};

async function expectOk(promise, what) {
  const res = await promise;
  if (res.status >= 300) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.data)}`);
  return res;
}

async function timedSeries(api, method, path, body) {
  for (let i = 0; i < WARMUP; i++) await expectOk(api(method, path, body), `${method} ${path}`);
  const samples = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t = performance.now();
    await expectOk(api(method, path, body), `${method} ${path}`);
    samples.push(performance.now() - t);
  }
  return { p50: percentile(samples, 50), p95: percentile(samples, 95) };
}

async function cronRun(baseUrl, api) {
  await fetch(`${baseUrl}/__bench/d1-statements/reset`, { method: "POST" });
  let running = true;
  const waits = [];
  const healthWaits = [];
  const probe = async (samples, call) => {
    while (running) {
      const t = performance.now();
      await call();
      samples.push(performance.now() - t);
      await sleep(10);
    }
  };
  // Two probes: an API route that reads D1, and /healthz, which does not (is it D1 or the isolate?).
  const probers = Promise.all([
    probe(waits, () => expectOk(api("GET", "/v1/agents?limit=20"), "list agents during cron")),
    probe(healthWaits, async () => (await fetch(`${baseUrl}/healthz`)).text()),
  ]);
  await sleep(50);
  const started = performance.now();
  const res = await fetch(`${baseUrl}/__scheduled?cron=${encodeURIComponent("*/5 * * * *")}`);
  await res.text();
  const cronMs = performance.now() - started;
  running = false;
  await probers;
  const counts = await (await fetch(`${baseUrl}/__bench/d1-statements`)).json();
  return {
    status: res.status,
    cronMs,
    slowestStatementMs: counts.slowest?.ms ?? 0,
    slowestStatementSql: counts.slowest?.sql ?? "",
    statements: counts.reads + counts.writes,
    apiRequests: waits.length,
    worstApiWaitMs: waits.length ? Math.max(...waits) : 0,
    worstHealthzWaitMs: healthWaits.length ? Math.max(...healthWaits) : 0,
  };
}

async function measureSize(percent, keys) {
  let filled;
  const server = await startDevServer({
    vars: {
      AUTH_ISSUER: ISSUER,
      AUTH_JWKS: JSON.stringify({ keys: [keys.publicJwk] }),
      TIER_LIMITS: JSON.stringify({ free: { invocationsPerPeriod: 1_000_000_000, agents: 1_000_000 } }),
    },
    extraArgs: ["src/bench/entry.ts", "--test-scheduled"],
    logFile: join(PROJECT_ROOT, ".wrangler", "bench", `scale-${percent}.log`),
    readyTimeoutMs: 180_000,
    beforeStart: (persistDir) => {
      console.log(`B8 ${percent}%: generating data …`);
      filled = fillScaleData(persistDir, { fraction: percent / 100, realSubject: SUBJECT });
      console.log(`B8 ${percent}%: ${JSON.stringify(filled.rows)} in ${filled.seconds.toFixed(1)} s`);
    },
  });
  try {
    const token = await mintToken(keys.privateJwk, { subject: SUBJECT, issuer: ISSUER, expiresIn: 3600 });
    const api = httpClient({ baseUrl: server.baseUrl, token, timeoutMs: 60_000 }).json;
    const agent = await expectOk(api("POST", "/v1/agents", { name: "bench-scale-real" }), "create agent");
    const agentId = agent.data.agent.id;
    const dep = await expectOk(
      api("POST", `/v1/agents/${agentId}/deploy`, { moduleCode: AGENT_MODULE, compatibilityDate: "2026-11-01" }),
      "deploy",
    );
    const deploymentId = dep.data.deployment.id;
    for (let i = 0; ; i++) {
      const { data } = await expectOk(
        api("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`),
        "read deployment",
      );
      if (data.deployment.status === "active") break;
      if (data.deployment.status !== "deploying" || i > 600) throw new Error(`deploy ended ${data.deployment.status}`);
      await sleep(50);
    }
    const routes = {
      "list agents": await timedSeries(api, "GET", "/v1/agents?limit=20"),
      "list deployments (busy agent)": await timedSeries(api, "GET", `/v1/agents/${filled.busyAgentId}/deployments`),
      "metrics/recent (busy agent)": await timedSeries(api, "GET", `/v1/metrics/recent?agentId=${filled.busyAgentId}`),
      "metrics/recent (quiet agent)": await timedSeries(
        api,
        "GET",
        `/v1/metrics/recent?agentId=${filled.quietAgentId}`,
      ),
      "usage/current": await timedSeries(api, "GET", "/v1/usage/current"),
      invoke: await timedSeries(api, "POST", `/v1/invoke/${agentId}`, INVOKE_BODY),
    };
    const crons = [];
    for (let i = 0; i < CRON_RUNS; i++) crons.push(await cronRun(server.baseUrl, api));
    // A look inside the reconciliation's step: its statements run and timed one by one.
    const profile = await (
      await fetch(`${server.baseUrl}/__bench/reconcile-profile`, { method: "POST", body: JSON.stringify({ steps: 5 }) })
    ).json();
    return { percent, rows: filled.rows, generateSeconds: filled.seconds, routes, crons, reconcileProfile: profile };
  } finally {
    await server.stop();
  }
}

function report(results) {
  const first = results[0];
  const last = results.at(-1);
  const lines = [];
  const pad = (s, n) => String(s).padEnd(n);
  lines.push(`B8 cost as data grows — sizes ${results.map((r) => `${r.percent}%`).join(" / ")}`);
  lines.push(
    `${pad("route p50 (ms)", 34)}${results.map((r) => pad(`${r.percent}%`, 10)).join("")}ratio  goal ≤ ${GOALS.routeRatio}×`,
  );
  const verdicts = [];
  for (const route of Object.keys(first.routes)) {
    const ratio = last.routes[route].p50 / first.routes[route].p50;
    const met = ratio <= GOALS.routeRatio;
    verdicts.push(met);
    lines.push(
      `${pad(route, 34)}${results.map((r) => pad(r.routes[route].p50.toFixed(1), 10)).join("")}${pad(`${ratio.toFixed(2)}×`, 7)}${met ? "met" : "NOT met"}`,
    );
  }
  lines.push("");
  lines.push(`${pad("cron run (worst of 3)", 34)}${results.map((r) => pad(`${r.percent}%`, 10)).join("")}`);
  const worst = (r, key) => Math.max(...r.crons.map((c) => c[key]));
  lines.push(`${pad("  wall time (ms)", 34)}${results.map((r) => pad(worst(r, "cronMs").toFixed(0), 10)).join("")}`);
  lines.push(
    `${pad("  slowest D1 statement (ms)", 34)}${results.map((r) => pad(worst(r, "slowestStatementMs").toFixed(1), 10)).join("")}`,
  );
  lines.push(
    `${pad("  worst API wait during it (ms)", 34)}${results.map((r) => pad(worst(r, "worstApiWaitMs").toFixed(0), 10)).join("")}`,
  );
  lines.push(
    `${pad("  worst /healthz wait during it (ms)", 34)}${results.map((r) => pad(worst(r, "worstHealthzWaitMs").toFixed(0), 10)).join("")}`,
  );
  // The first run after the server starts meets a cold database (and, after the fill, the whole
  // month's backlog); later runs are the steady state a running gateway sees every 5 minutes.
  const later = (r, key) => Math.max(...r.crons.slice(1).map((c) => c[key]));
  lines.push(
    `${pad("  worst API wait, first run (ms)", 34)}${results.map((r) => pad(r.crons[0].worstApiWaitMs.toFixed(0), 10)).join("")}`,
  );
  lines.push(
    `${pad("  worst API wait, runs 2-3 (ms)", 34)}${results.map((r) => pad(later(r, "worstApiWaitMs").toFixed(0), 10)).join("")}`,
  );
  const at100 = results.find((r) => r.percent === 100);
  if (at100) {
    const met = (ms) => (ms < GOALS.cronWaitMsAt100 ? "met" : "NOT met");
    lines.push(
      `  goal: worst API wait at 100% < ${GOALS.cronWaitMsAt100} ms: ${met(worst(at100, "worstApiWaitMs"))} (runs 2-3: ${met(later(at100, "worstApiWaitMs"))})`,
    );
  }
  const slowest = last.crons.reduce((a, c) => (c.slowestStatementMs > a.slowestStatementMs ? c : a));
  lines.push(`  slowest statement at ${last.percent}%: ${slowest.slowestStatementSql}`);
  lines.push("");
  lines.push("reconciliation step, each statement alone after the cron runs (max ms over 5 steps)");
  for (const [i, sql] of first.reconcileProfile.statements.entries()) {
    const cells = results.map((r) => pad(Math.max(...r.reconcileProfile.steps.map((s) => s[i])).toFixed(0), 10));
    lines.push(`  ${pad(sql.slice(0, 40), 42)}${cells.join("")}`);
  }
  const batchedCells = results.map((r) => pad(Math.max(...r.reconcileProfile.batched).toFixed(0), 10));
  lines.push(`  ${pad("the same 9 in one batch (max of 5)", 42)}${batchedCells.join("")}`);
  return lines.join("\n");
}

async function main() {
  const keys = await newSigningKey("bench-scale");
  const results = [];
  for (const percent of SIZES) results.push(await measureSize(percent, keys));
  const text = report(results);
  console.log(`\n${text}`);
  const dir = join(PROJECT_ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const file = join(dir, `${stamp}-b8.json`);
  const machine = { cpus: cpus().length, loadavg: loadavg(), node: process.version };
  writeFileSync(
    file,
    `${JSON.stringify({ machine, sizes: SIZES, requests: REQUESTS, results, table: text }, null, 2)}\n`,
  );
  console.log(`\nwritten: ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
