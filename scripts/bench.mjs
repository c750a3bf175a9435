// `npm run bench [-- --seconds N --connections N]`: benchmarks the gateway against baselines
// measured in the same run, on this machine, over loopback only. It builds the production bundle
// (dry run), starts its own `wrangler dev` (startBenchServer below, through scripts/lib/dev-server.ts:
// a free port, fresh state, its own key pair, the bench entry src/bench/entry.ts for the local-only
// baseline routes and the D1 statement counter), and stops it at the end, also on failure.
//   B1 invoke overhead   POST /v1/invoke/:agentId vs POST /__bench/baseline/:deploymentId (the same
//                        loaded user worker, called with none of the gateway's work): autocannon load
//   B2 stream            time to the first SSE event, /v1/invoke/:agentId/stream vs the baseline's /stream
//   B3 D1 statements     per invocation during B1's gateway load (warm isolate), metering drained
//   B4 telemetry ingest  events/s through POST /v1/telemetry/report (single events, batches of 100)
//                        vs POST /__bench/noop with the same generated, signed bodies; goals
//                        ≥ 0.8× (single) and ≥ 0.5× (batch). `--only b4` runs just B4, in both
//                        LOG_REQUESTS modes
//   B5 deploy to active  POST …/deploy until GET …/deployments/:id says active; also for bundles of
//                        1 MiB and 3 MiB (the agent plus a text module), on another agent
//   B6 bundle and start  gzip of the production dry-run bundle; `wrangler check startup` CPU profile
//   B7 runs              resume cost (GET /v1/runs/:runId/events with Last-Event-ID to the first
//                        replayed event, p50/p99) and the events/s one run records (a background run
//                        whose agent emits its events at once). `--only b7` runs just B7.
//   B9 egress door       an agent's outbound GET to a local server through the egress door, timed
//                        inside the agent, against the same GET made directly from the gateway's
//                        isolate (POST /__bench/fetch); the difference is what the door adds per call
//   CPU per request      `--only cpu`: the local server's CPU time per B1 request, gateway vs baseline
//                        (from /proc; steadier than latency when other work shares the machine)
// Prints a table and writes bench/results/<timestamp>.json. Every load phase is bounded in time
// and request count.
import { createHmac, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import { PROJECT_ROOT, startDevServer } from "./lib/dev-server.ts";
import { httpClient } from "./lib/http-client.ts";
import { removeScratchDir, runToEnd, scratchDir } from "./lib/launcher.ts";
import { offlineEnv } from "./lib/offline-env.ts";
import { readSse } from "./lib/sse.ts";
import { mintToken, newSigningKey } from "./lib/tokens.ts";

const args = process.argv.slice(2);
const argValue = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
/** Seconds of measured load per arm and round (B1 runs 2 rounds per arm, B4 one). */
const SECONDS = argValue("seconds", 5);
const CONNECTIONS = argValue("connections", 8);
const WARMUP_SECONDS = 2;
/** B0 is context for B1: shorter rounds, same alternation. */
const B0_SECONDS = Math.max(1, Math.round(SECONDS * 0.6));
const STREAMS = argValue("streams", 200);
/** Streams are timed one at a time: time to first event is a latency. */
const STREAM_CONCURRENCY = 1;
const DEPLOYS = argValue("deploys", 8);
/** `--api-key`: B1/B3/B4 invoke with a scoped API key (`invoke`, this agent only) instead of the JWT. */
const WITH_API_KEY = args.includes("--api-key");
/** B7: resumes timed per position, and the events one recorded run carries (≤ 10,000, the run limit). */
const RESUMES = argValue("resumes", 100);
const RUN_EVENTS = Math.min(9_000, argValue("run-events", 5_000));
/** `--only b7`: start the server, deploy once, run B7 alone (a quick look; no B0–B6). */
const ONLY = args.includes("--only") ? args[args.indexOf("--only") + 1] : null;
if (ONLY !== null && !["b4", "b7", "b5-bundles", "b9", "log-modes", "cpu"].includes(ONLY)) {
  console.error(`--only takes b4, b7, b5-bundles, b9, log-modes or cpu (got ${ONLY})`);
  process.exit(2);
}
/** B5 with bundles: deploys per size, and the sizes (MiB, decoded). */
const BUNDLE_DEPLOYS = argValue("bundle-deploys", 3);
const BUNDLE_MIB = [1, 3];
/** B9: outbound calls timed per arm. */
const EGRESS_CALLS = argValue("egress-calls", 200);
/** Hard cap on any one load phase, whatever happens. */
const MAX_REQUESTS_PER_PHASE = 200_000;

const GOALS = {
  b1P50: 1.1,
  b1Throughput: 0.85,
  b2FirstEvent: 1.1,
  b3Reads: 0.1,
  b3Writes: 0.05,
  b5Seconds: 1.5,
  // B1 in LOG_REQUESTS=errors mode (the hardening goals): p99 and throughput against the baseline.
  logModeP99: 1.3,
  logModeThroughput: 0.9,
  b6GzipBytes: 250 * 1000,
  // B4 telemetry ingest, events/s against the no-op with the same signed bodies (issue 15, §3).
  b4Single: 0.8,
  b4Batch: 0.5,
};

// The user worker behind B1–B3: invoke/v1 with no telemetry of its own, so what is counted is the
// gateway's work. A streamed answer sends its first event at once and `done` 20 ms later. The
// message "__telemetry_secret__" returns the deployment's TELEMETRY_SECRET (B4 signs with it) and USER_ID;
// "__burst__ <n>" streams n deltas at once, then done (B7).
const BENCH_AGENT_MODULE = `
const enc = new TextEncoder();
const sse = (name, data) => enc.encode("event: " + name + "\\ndata: " + JSON.stringify(data) + "\\n\\n");
export default {
  async fetch(request, env) {
    if (request.method !== "POST") return Response.json({ ok: true });
    const body = await request.json();
    const last = body.messages[body.messages.length - 1]?.content ?? "";
    if (last === "__telemetry_secret__") {
      return Response.json({ output: { text: JSON.stringify({ secret: env.TELEMETRY_SECRET, userId: env.USER_ID }) } });
    }
    const answer = { output: { text: last }, usage: { inputTokens: 1, outputTokens: 1 } };
    if (last.startsWith("__burst__ ")) {
      const n = Number(last.slice(10));
      const stream = new ReadableStream({
        start(controller) {
          for (let i = 1; i <= n; i++) controller.enqueue(sse("delta", { text: String(i) }));
          controller.enqueue(sse("done", answer));
          controller.close();
        },
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream" } });
    }
    if ((request.headers.get("accept") ?? "").includes("text/event-stream")) {
      const stream = new ReadableStream({
        async start(controller) {
          controller.enqueue(sse("delta", { text: last }));
          await new Promise((r) => setTimeout(r, 20));
          controller.enqueue(sse("done", answer));
          controller.close();
        },
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream" } });
    }
    return Response.json(answer);
  },
};`;

const INVOKE_BODY = JSON.stringify({ messages: [{ role: "user", content: "how much does the gateway add?" }] });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function summarize(samples, seconds, extra = {}) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    perSecond: sorted.length / seconds,
    ...extra,
  };
}

const ratio = (a, b) => (b > 0 ? a / b : Number.NaN);

/** Runs wrangler to completion in its own process group; resolves with its output, rejects on failure. */
function wrangler(cmdArgs) {
  return runToEnd("wrangler", cmdArgs, { env: offlineEnv({ FORCE_COLOR: "0", NO_COLOR: "1" }), timeoutMs: 180_000 });
}

// ---------------------------------------------------------------------------------------------
// B6: the production bundle and its startup

async function measureBundle() {
  const outdir = scratchDir("webhost-bench-bundle-");
  try {
    const output = await wrangler(["deploy", "--dry-run", "--env", "production", "--outdir", outdir]);
    let raw = 0;
    let gzip = 0;
    const files = [];
    for (const name of readdirSync(outdir)) {
      if (!/\.(m?js|wasm)$/.test(name)) continue; // the upload: modules, not source maps or README
      const bytes = readFileSync(join(outdir, name));
      raw += bytes.byteLength;
      gzip += gzipSync(bytes, { level: 9 }).byteLength;
      files.push(name);
    }
    const reported = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(output);
    return {
      files,
      rawBytes: raw,
      gzipBytes: gzip,
      wranglerReported: reported ? { uploadKiB: Number(reported[1]), gzipKiB: Number(reported[2]) } : null,
    };
  } finally {
    removeScratchDir(outdir);
  }
}

async function measureStartup() {
  const dir = scratchDir("webhost-bench-startup-");
  try {
    const output = await wrangler([
      "check",
      "startup",
      "--env",
      "production",
      "--outfile",
      join(dir, "startup.cpuprofile"),
    ]);
    const num = (re) => {
      const m = re.exec(output);
      return m ? Number(m[1]) : null;
    };
    return {
      activeMs: num(/Active: ([\d.]+) ms/),
      gcMs: num(/including ([\d.]+) ms garbage collection/),
      profileWindowMs: num(/Profile window: ([\d.]+) ms/),
    };
  } finally {
    removeScratchDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// The bench's server: the one place that decides how `wrangler dev` is started for the bench
// (configuration, vars, log file).

function startBenchServer({ issuer, jwks, logRequests = "all" }) {
  return startDevServer({
    vars: {
      LOG_REQUESTS: logRequests,
      AUTH_ISSUER: issuer,
      AUTH_JWKS: JSON.stringify(jwks),
      // The bench invokes, and B4 reports telemetry, far more often than the free plan allows.
      TIER_LIMITS: JSON.stringify({
        free: {
          invocationsPerPeriod: 1_000_000_000,
          deploysPerDay: 10_000,
          telemetryEventsPerMinute: 1_000_000_000,
          telemetryEventsPerPeriod: 1_000_000_000,
        },
      }),
    },
    // The bench entry: the gateway plus the /__bench routes and the D1 statement counter, with
    // wrangler.toml's local bindings (the positional script replaces only `main`).
    extraArgs: ["src/bench/entry.ts"],
    logFile: join(
      PROJECT_ROOT,
      ".wrangler",
      "bench",
      logRequests === "all" ? "server.log" : `server-${logRequests}.log`,
    ),
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

/** `(method, path, body?) => { status, headers, data }` against the bench's server. */
function client(baseUrl, token) {
  return httpClient({ baseUrl, token, timeoutMs: 30_000 }).json;
}

async function expectStatus(promise, status, what) {
  const res = await promise;
  if (res.status !== status)
    throw new Error(`${what}: expected ${status}, got ${res.status} ${JSON.stringify(res.data)}`);
  return res;
}

async function deployAndWait(api, agentId, body) {
  const started = performance.now();
  const res = await expectStatus(api("POST", `/v1/agents/${agentId}/deploy`, body), 202, "deploy");
  const id = res.data.deployment.id;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { data } = await expectStatus(api("GET", `/v1/agents/${agentId}/deployments/${id}`), 200, "read deployment");
    if (data.deployment.status === "active") return { id, seconds: (performance.now() - started) / 1000 };
    if (data.deployment.status !== "deploying") {
      throw new Error(`deployment ${id} ended ${data.deployment.status}: ${data.deployment.errorMessage}`);
    }
    if (Date.now() > deadline) throw new Error(`deployment ${id} still deploying after 30 s`);
    await sleep(10);
  }
}

/** autocannon for `seconds`; latencies (float ms, 2xx only) collected from its response events. */
async function loadPhase({ url, method = "POST", headers, body, setupRequest, seconds, connections = CONNECTIONS }) {
  const samples = [];
  let failures = 0;
  const started = performance.now();
  const instance = autocannon({
    url,
    method,
    headers,
    body,
    connections,
    duration: seconds,
    amount: undefined,
    timeout: 10,
    requests: setupRequest ? [{ setupRequest }] : undefined,
  });
  instance.on("response", (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) samples.push(responseTime);
    else failures++;
    if (samples.length + failures >= MAX_REQUESTS_PER_PHASE) instance.stop();
  });
  const result = await instance;
  const elapsed = (performance.now() - started) / 1000;
  const errors = failures + result.errors + result.timeouts;
  return { samples, seconds: elapsed, errors, statusCodes: result.statusCodeStats };
}

function combine(phases) {
  return {
    samples: phases.flatMap((p) => p.samples),
    seconds: phases.reduce((s, p) => s + p.seconds, 0),
    errors: phases.reduce((s, p) => s + p.errors, 0),
  };
}

/** Reads one SSE stream: ms to the first complete event, then drains the rest. */
async function firstEventMs(url, headers) {
  const t = performance.now();
  const res = await fetch(url, { method: "POST", headers, body: INVOKE_BODY, signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  let first;
  for await (const event of readSse(res.body)) first ??= event.receivedAt - t;
  if (first === undefined) throw new Error(`${url}: no SSE event`);
  return first;
}

async function streamPhase(url, headers, count) {
  const samples = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      next++;
      samples.push(await firstEventMs(url, headers));
    }
  };
  await Promise.all(Array.from({ length: STREAM_CONCURRENCY }, worker));
  return { samples, seconds: (performance.now() - started) / 1000, errors: 0 };
}

async function d1Statements(baseUrl) {
  const res = await fetch(`${baseUrl}/__bench/d1-statements`);
  return res.json();
}

/** Waits until the usage queue has metered everything (the statement counter stops moving). */
async function drainMetering(baseUrl, minMs = 2500) {
  const started = Date.now();
  let last = JSON.stringify(await d1Statements(baseUrl));
  for (;;) {
    await sleep(500);
    const now = JSON.stringify(await d1Statements(baseUrl));
    if (now === last && Date.now() - started >= minMs) return;
    if (Date.now() - started > 15_000) return;
    last = now;
  }
}

/**
 * B7. One run records RUN_EVENTS deltas and done, emitted by the agent all at once, with no client
 * attached (a background run): events/s is what the run's driver and its Durable Object record,
 * from the run's startedAt to its endedAt (the Durable Object's clock), and from the POST until
 * `wait` answers (the client's). Then the resume cost: `events` with Last-Event-ID near the run's
 * end (what a dropped client sends) and in its middle (replaying half of it), timed to the first
 * replayed event, RESUMES times each after 5 unmeasured warm-ups.
 */
async function measureB7({ base, api, agentId, token }) {
  const t0 = performance.now();
  const body = { messages: [{ role: "user", content: `__burst__ ${RUN_EVENTS}` }] };
  const started = await expectStatus(api("POST", `/v1/agents/${agentId}/runs`, body), 202, "start the B7 run");
  const runId = started.data.run.id;
  let run;
  for (let i = 0; i < 5 && run?.status !== "succeeded"; i++) {
    const res = await api("GET", `/v1/runs/${runId}/wait?timeoutSeconds=60`);
    if (res.status !== 200 && res.status !== 202) throw new Error(`wait: ${res.status} ${JSON.stringify(res.data)}`);
    run = res.data.run;
    if (run.status !== "running" && run.status !== "succeeded") throw new Error(`B7 run ended ${run.status}`);
  }
  if (run?.status !== "succeeded") throw new Error(`B7 run ${runId} did not end within 5 minutes`);
  const wallSeconds = (performance.now() - t0) / 1000;
  const events = RUN_EVENTS + 1;
  const record = {
    events,
    recordSeconds: (run.endedAt - run.startedAt) / 1000,
    wallSeconds,
    eventsPerSecond: events / ((run.endedAt - run.startedAt) / 1000),
    wallEventsPerSecond: events / wallSeconds,
  };

  const resumeAt = async (after) => {
    const samples = [];
    for (let i = 0; i < RESUMES + 5; i++) {
      const t = performance.now();
      const res = await fetch(`${base}/v1/runs/${runId}/events`, {
        headers: { authorization: `Bearer ${token}`, "last-event-id": String(after) },
        signal: AbortSignal.timeout(15_000),
      });
      if (res.status !== 200) throw new Error(`events: ${res.status} ${await res.text()}`);
      let first;
      for await (const event of readSse(res.body)) {
        first = event;
        break; // leaving the loop cancels the body: only the first event is timed
      }
      if (Number(first?.id) !== after + 1) throw new Error(`resumed after ${after} at ${first?.id}, not ${after + 1}`);
      if (i >= 5) samples.push(first.receivedAt - t);
    }
    return samples;
  };
  const tail = await resumeAt(events - 10);
  const middle = await resumeAt(Math.floor(events / 2));
  return { runId, record, resume: { tail, middle } };
}

function b7Rows(b7, add) {
  const tail = summarize(b7.resume.tail, 1);
  const middle = summarize(b7.resume.middle, 1);
  add("B7 resume, last 10 events", "first event p50 ms", tail.p50Ms, null, null, "", null);
  add("B7 resume, last 10 events", "first event p99 ms", tail.p99Ms, null, null, "", null);
  add(
    `B7 resume, last ${b7.record.events - Math.floor(b7.record.events / 2)}`,
    "first event p50 ms",
    middle.p50Ms,
    null,
    null,
    "",
    null,
  );
  add(
    `B7 resume, last ${b7.record.events - Math.floor(b7.record.events / 2)}`,
    "first event p99 ms",
    middle.p99Ms,
    null,
    null,
    "",
    null,
  );
  add(`B7 one run, ${b7.record.events} events`, "events/s recorded", b7.record.eventsPerSecond, null, null, "", null);
  add(
    `B7 one run, ${b7.record.events} events`,
    "events/s, POST to wait",
    b7.record.wallEventsPerSecond,
    null,
    null,
    "",
    null,
  );
  return {
    resume: {
      lastTen: { p50Ms: tail.p50Ms, p99Ms: tail.p99Ms, n: tail.n },
      half: { p50Ms: middle.p50Ms, p99Ms: middle.p99Ms, n: middle.n },
    },
    record: b7.record,
    runId: b7.runId,
  };
}

// ---------------------------------------------------------------------------------------------
// B5 with real-sized bundles, and B9 the egress door

/** Seconds to active for bundles of each size in BUNDLE_MIB (a text module pads the agent out). */
async function measureBundleDeploys(api) {
  const created = await expectStatus(api("POST", "/v1/agents", { name: "bench-bundles" }), 201, "create agent");
  const agentId = created.data.agent.id;
  const out = {};
  for (const mib of BUNDLE_MIB) {
    out[mib] = [];
    for (let i = 0; i < BUNDLE_DEPLOYS; i++) {
      // Distinct bytes each time, so no deploy is answered by an artifact already stored.
      const filler = `${randomUUID()} `.repeat(Math.floor((mib * 1024 * 1024 - 4096) / 37));
      const body = {
        mainModuleName: "index.js",
        modules: [
          { name: "index.js", type: "esm", content: BENCH_AGENT_MODULE },
          { name: "filler.txt", type: "text", content: filler },
        ],
      };
      out[mib].push((await deployAndWait(api, agentId, body)).seconds);
    }
  }
  return out;
}

/** An agent that makes `n` sequential GETs of `url` (through the egress door) and returns their times. */
const EGRESS_AGENT_MODULE = `export default {
  async fetch(request) {
    if (request.method !== "POST") return Response.json({ ok: true });
    const { messages } = await request.json();
    const { url, n } = JSON.parse(messages[messages.length - 1].content);
    const samples = [];
    for (let i = 0; i < n; i++) {
      const started = performance.now();
      await (await fetch(url)).arrayBuffer();
      samples.push(performance.now() - started);
    }
    return Response.json({ output: { text: JSON.stringify(samples) } });
  },
};`;

/** B9: the egress door's added time per outbound call, against the same call made directly. */
async function measureEgressDoor(base, api) {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"ok":true}');
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/bench`;
  try {
    const created = await expectStatus(api("POST", "/v1/agents", { name: "bench-egress" }), 201, "create agent");
    const agentId = created.data.agent.id;
    const policy = { mode: "allowlist", allow: ["127.0.0.1"] };
    await expectStatus(api("PUT", `/v1/agents/${agentId}/egress`, policy), 200, "egress policy");
    await deployAndWait(api, agentId, { moduleCode: EGRESS_AGENT_MODULE });
    const viaDoor = async (n) => {
      const body = { messages: [{ role: "user", content: JSON.stringify({ url, n }) }] };
      const res = await expectStatus(api("POST", `/v1/invoke/${agentId}`, body), 200, "egress agent");
      return JSON.parse(res.data.output.text);
    };
    const direct = async (n) => {
      const res = await fetch(`${base}/__bench/fetch`, { method: "POST", body: JSON.stringify({ url, n }) });
      if (!res.ok) throw new Error(`/__bench/fetch: ${res.status}`);
      return (await res.json()).samples;
    };
    await viaDoor(10);
    await direct(10);
    const half = Math.ceil(EGRESS_CALLS / 2);
    const door = [...(await viaDoor(half)), ...(await viaDoor(half))];
    const baseline = [...(await direct(half)), ...(await direct(half))];
    return { door, baseline };
  } finally {
    server.close();
  }
}

/**
 * B1 (1 connection and CONNECTIONS) and B2 on a server started with LOG_REQUESTS=`mode`: the same
 * alternation of arms as the main B1/B2, shorter. The goals apply to `errors` mode, the one
 * production runs when the per-request line is not wanted (docs/production.md).
 */
async function measureLogMode({ issuer, jwks, token, mode }) {
  const server = await startBenchServer({ issuer, jwks, logRequests: mode });
  try {
    const base = server.baseUrl;
    const api = client(base, token);
    const created = await expectStatus(api("POST", "/v1/agents", { name: `bench-${mode}` }), 201, "create agent");
    const agentId = created.data.agent.id;
    const { id: deploymentId } = await deployAndWait(api, agentId, { moduleCode: BENCH_AGENT_MODULE });
    const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const gatewayUrl = `${base}/v1/invoke/${agentId}`;
    const baselineUrl = `${base}/__bench/baseline/${deploymentId}`;
    const phase = (url, connections) => loadPhase({ url, headers, body: INVOKE_BODY, seconds: SECONDS, connections });
    await loadPhase({ url: baselineUrl, headers, body: INVOKE_BODY, seconds: WARMUP_SECONDS });
    await loadPhase({ url: gatewayUrl, headers, body: INVOKE_BODY, seconds: WARMUP_SECONDS });
    const b1 = {};
    for (const [kind, connections] of [
      ["latency", 1],
      ["throughput", CONNECTIONS],
    ]) {
      const arms = { gateway: [], baseline: [] };
      for (const arm of ["baseline", "gateway", "gateway", "baseline"]) {
        arms[arm].push(await phase(arm === "gateway" ? gatewayUrl : baselineUrl, connections));
      }
      b1[kind] = { gateway: combine(arms.gateway), baseline: combine(arms.baseline) };
    }
    const sse = { ...headers, accept: "text/event-stream" };
    await streamPhase(`${gatewayUrl}/stream`, sse, 20);
    await streamPhase(`${baselineUrl}/stream`, sse, 20);
    const half = Math.ceil(STREAMS / 4);
    const b2 = {
      baseline: combine([await streamPhase(`${baselineUrl}/stream`, sse, half)]),
      gateway: combine([await streamPhase(`${gatewayUrl}/stream`, sse, half)]),
    };
    b2.gateway = combine([b2.gateway, await streamPhase(`${gatewayUrl}/stream`, sse, half)]);
    b2.baseline = combine([b2.baseline, await streamPhase(`${baselineUrl}/stream`, sse, half)]);
    return { mode, b1, b2 };
  } finally {
    await server.stop();
  }
}

/** Rows for each LOG_REQUESTS mode's B1/B2, the goals applied to `errors` mode only. */
function logModeRows(results, add) {
  const out = {};
  for (const { mode, b1, b2 } of results) {
    const goals = mode === "errors";
    const lat = {
      g: summarize(b1.latency.gateway.samples, b1.latency.gateway.seconds),
      b: summarize(b1.latency.baseline.samples, b1.latency.baseline.seconds),
    };
    const thr = {
      g: summarize(b1.throughput.gateway.samples, b1.throughput.gateway.seconds),
      b: summarize(b1.throughput.baseline.samples, b1.throughput.baseline.seconds),
    };
    const st = {
      g: summarize(b2.gateway.samples, b2.gateway.seconds),
      b: summarize(b2.baseline.samples, b2.baseline.seconds),
    };
    const r = {
      p50: ratio(lat.g.p50Ms, lat.b.p50Ms),
      p99: ratio(lat.g.p99Ms, lat.b.p99Ms),
      throughput: ratio(thr.g.perSecond, thr.b.perSecond),
      b2p50: ratio(st.g.p50Ms, st.b.p50Ms),
    };
    const label = `LOG_REQUESTS=${mode}`;
    const goal = (text, met) => (goals ? [text, met] : ["", null]);
    add(
      `B1 ${label}`,
      "p50 ms, 1 conn",
      lat.g.p50Ms,
      lat.b.p50Ms,
      r.p50,
      ...goal(`≤ ${GOALS.b1P50}×`, r.p50 <= GOALS.b1P50),
    );
    add(
      `B1 ${label}`,
      "p99 ms, 1 conn",
      lat.g.p99Ms,
      lat.b.p99Ms,
      r.p99,
      ...goal(`≤ ${GOALS.logModeP99}×`, r.p99 <= GOALS.logModeP99),
    );
    add(
      `B1 ${label}`,
      `req/s, ${CONNECTIONS} conn`,
      thr.g.perSecond,
      thr.b.perSecond,
      r.throughput,
      ...goal(`≥ ${GOALS.logModeThroughput}×`, r.throughput >= GOALS.logModeThroughput),
    );
    add(
      `B2 ${label}`,
      "first event p50 ms",
      st.g.p50Ms,
      st.b.p50Ms,
      r.b2p50,
      ...goal(`≤ ${GOALS.b2FirstEvent}×`, r.b2p50 <= GOALS.b2FirstEvent),
    );
    out[mode] = { b1: { latency: lat, throughput: thr }, b2: st, ratios: r };
  }
  return out;
}

function extraRows(r, add) {
  const out = {};
  if (r.bundleDeploys) {
    out.b5Bundles = {};
    for (const [mib, samples] of Object.entries(r.bundleDeploys)) {
      const sorted = [...samples].sort((a, b) => a - b);
      const p50 = percentile(sorted, 50);
      out.b5Bundles[mib] = { runs: sorted.length, p50Seconds: p50, samples };
      const goal = mib === "1" ? `< ${GOALS.b5Seconds} s` : "";
      add(`B5 deploy, ${mib} MiB bundle`, "p50 s", p50, null, null, goal, goal ? p50 < GOALS.b5Seconds : null);
    }
  }
  if (r.egress) {
    const door = [...r.egress.door].sort((a, b) => a - b);
    const direct = [...r.egress.baseline].sort((a, b) => a - b);
    const b9 = {
      calls: door.length,
      door: { p50Ms: percentile(door, 50), p99Ms: percentile(door, 99) },
      direct: { p50Ms: percentile(direct, 50), p99Ms: percentile(direct, 99) },
    };
    b9.addedP50Ms = b9.door.p50Ms - b9.direct.p50Ms;
    out.b9 = b9;
    add(
      "B9 egress door",
      "p50 ms per call",
      b9.door.p50Ms,
      b9.direct.p50Ms,
      ratio(b9.door.p50Ms, b9.direct.p50Ms),
      "",
      null,
    );
    add(
      "B9 egress door",
      "p99 ms per call",
      b9.door.p99Ms,
      b9.direct.p99Ms,
      ratio(b9.door.p99Ms, b9.direct.p99Ms),
      "",
      null,
    );
    add("B9 egress door", "added p50 ms", b9.addedP50Ms, null, null, "(reported)", null);
  }
  return out;
}

/**
 * B4. Signed telemetry through POST /v1/telemetry/report against POST /__bench/noop with the same
 * generated, signed bodies (one event, then batches of 100), CONNECTIONS connections. Reports are
 * answered once queued; the usage queue's consumer stores them afterwards, in the same process, so
 * the metering each gateway phase leaves behind is drained before the next phase starts (it would
 * otherwise slow whichever arm runs next).
 */
async function measureB4({ base, api, agentId, deploymentId }) {
  const secretAnswer = await expectStatus(
    api("POST", `/v1/invoke/${agentId}`, { messages: [{ role: "user", content: "__telemetry_secret__" }] }),
    200,
    "read telemetry secret",
  );
  const { secret, userId: owner } = JSON.parse(secretAnswer.data.output.text);
  const key = Buffer.from(secret, "base64url");
  const event = () => ({
    eventId: randomUUID(),
    userId: owner,
    agentId,
    deploymentId,
    runtimeProvider: "cloudflare",
    kind: "invoke",
    ts: Date.now(),
    durationMs: 3,
    status: "ok",
  });
  const signed = (events) => (request) => {
    const body =
      events === 1 ? JSON.stringify(event()) : JSON.stringify({ events: Array.from({ length: events }, event) });
    request.body = body;
    request.headers = {
      ...request.headers,
      "content-type": "application/json",
      "x-telemetry-deployment-id": deploymentId,
      "x-telemetry-signature": `v1=${createHmac("sha256", key).update(body).digest("hex")}`,
    };
    return request;
  };
  const out = {};
  for (const events of [1, 100]) {
    const setupRequest = signed(events);
    const phase = (url, seconds) => loadPhase({ url, setupRequest, seconds });
    await phase(`${base}/__bench/noop`, 1);
    await phase(`${base}/v1/telemetry/report`, 1);
    await drainMetering(base);
    const noop = await phase(`${base}/__bench/noop`, SECONDS);
    const gateway = await phase(`${base}/v1/telemetry/report`, SECONDS);
    await drainMetering(base);
    out[events] = { gateway, noop, events };
  }
  return out;
}

/**
 * B4 rows: p50, p99 and events/s per report size, the goal on events/s. A phase with refusals
 * (a 429 from the telemetry limits, a 503) is not a measurement of ingest: its goal is not met.
 */
function b4Rows(r, add, label = "B4 telemetry") {
  const b4 = {};
  for (const [events, phases] of Object.entries(r)) {
    const g = summarize(phases.gateway.samples, phases.gateway.seconds, { errors: phases.gateway.errors });
    const n = summarize(phases.noop.samples, phases.noop.seconds, { errors: phases.noop.errors });
    const name = events === "1" ? `${label}, 1 event` : `${label}, ${events} events`;
    const gEvents = g.perSecond * Number(events);
    const nEvents = n.perSecond * Number(events);
    const goal = events === "1" ? GOALS.b4Single : GOALS.b4Batch;
    b4[events] = {
      gateway: { ...g, eventsPerSecond: gEvents, statusCodes: phases.gateway.statusCodes },
      noop: { ...n, eventsPerSecond: nEvents },
      goal,
    };
    b4[events].ratios = {
      p50: ratio(g.p50Ms, n.p50Ms),
      p99: ratio(g.p99Ms, n.p99Ms),
      throughput: ratio(gEvents, nEvents),
    };
    add(name, "p50 ms", g.p50Ms, n.p50Ms, b4[events].ratios.p50, "", null);
    add(name, "p99 ms", g.p99Ms, n.p99Ms, b4[events].ratios.p99, "", null);
    add(
      name,
      g.errors > 0 ? `events/s (${g.errors} refused)` : "events/s",
      gEvents,
      nEvents,
      b4[events].ratios.throughput,
      `≥ ${goal}×`,
      b4[events].ratios.throughput >= goal && g.errors === 0,
    );
  }
  return b4;
}

/** `--only b4`: B4 alone, on a server per LOG_REQUESTS mode (`all`, as in the full run, then `errors`). */
async function b4Only({ startedAt, load, issuer, jwks, token }) {
  const rows = [];
  const add = (bench, metric, gateway, baseline, ratioValue, goal, met) =>
    rows.push({ bench, metric, gateway, baseline, ratio: ratioValue, goal, met });
  const summary = {};
  for (const mode of ["all", "errors"]) {
    console.log(`B4 with LOG_REQUESTS=${mode}: single events and batches of 100, ${SECONDS} s per arm …`);
    const server = await startBenchServer({ issuer, jwks, logRequests: mode });
    try {
      const api = client(server.baseUrl, token);
      const created = await expectStatus(api("POST", "/v1/agents", { name: "bench" }), 201, "create agent");
      const agentId = created.data.agent.id;
      const { id: deploymentId } = await deployAndWait(api, agentId, { moduleCode: BENCH_AGENT_MODULE });
      const measured = await measureB4({ base: server.baseUrl, api, agentId, deploymentId });
      summary[mode] = b4Rows(measured, add, `B4 telemetry LOG_REQUESTS=${mode}`);
    } finally {
      await server.stop();
    }
  }
  load.after = loadavg().map((v) => Number(v.toFixed(2)));
  console.log(
    `\nb4 results (${startedAt.toISOString()}; load average before ${load.before.join(" ")}, after ${load.after.join(" ")})`,
  );
  console.log("| benchmark | metric | gateway | no-op | ratio | goal | met |\n|---|---|---|---|---|---|---|");
  for (const row of rows) {
    const met = row.met === null ? "" : row.met ? "yes" : "no";
    console.log(
      `| ${row.bench} | ${row.metric} | ${fmt(row.gateway)} | ${fmt(row.baseline)} | ${fmt(row.ratio)}× | ${row.goal} | ${met} |`,
    );
  }
  const dir = join(PROJECT_ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${startedAt.toISOString().replaceAll(":", "-")}-b4.json`);
  const machine = { cpus: cpus().length, node: process.version, loadAverage: load };
  const settings = { seconds: SECONDS, connections: CONNECTIONS };
  writeFileSync(
    file,
    `${JSON.stringify({ startedAt: startedAt.toISOString(), machine, settings, b4: summary, rows }, null, 2)}\n`,
  );
  console.log(`\nwrote ${file}`);
}

/** CPU seconds used so far by every process of a process group (wrangler, workerd), from /proc. */
function groupCpuSeconds(pgid, byCommand = {}) {
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // ended meanwhile
    }
    // Fields after the command name: state ppid pgrp … utime (14th field) stime (15th).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) !== pgid) continue;
    const seconds = (Number(fields[11]) + Number(fields[12])) / tick;
    const command = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    byCommand[command] = (byCommand[command] ?? 0) + seconds;
    total += seconds;
  }
  return total;
}

/**
 * `--only cpu`: the CPU time the local server (wrangler and workerd together) spends per B1
 * request, gateway against baseline, on a server with LOG_REQUESTS=errors. Unlike latency and
 * throughput it barely moves when other work shares the machine, so it tells where the gateway's
 * cost is even on a busy machine. The gateway's figure includes metering its invocations (the
 * usage consumer's batches, waited for before the CPU is read).
 */
async function cpuOnly({ startedAt, load, issuer, jwks, token }) {
  const requests = argValue("requests", 3000);
  const server = await startBenchServer({ issuer, jwks, logRequests: "errors" });
  try {
    const base = server.baseUrl;
    const api = client(base, token);
    const created = await expectStatus(api("POST", "/v1/agents", { name: "bench-cpu" }), 201, "create agent");
    const agentId = created.data.agent.id;
    const { id: deploymentId } = await deployAndWait(api, agentId, { moduleCode: BENCH_AGENT_MODULE });
    const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const urls = { gateway: `${base}/v1/invoke/${agentId}`, baseline: `${base}/__bench/baseline/${deploymentId}` };
    const fixed = (url, amount) =>
      autocannon({ url, method: "POST", headers, body: INVOKE_BODY, connections: CONNECTIONS, amount, timeout: 10 });
    await fixed(urls.baseline, 300);
    await fixed(urls.gateway, 300);
    await drainMetering(base);
    const perRequestMs = { gateway: [], baseline: [] };
    for (const arm of ["baseline", "gateway", "gateway", "baseline"]) {
      const split = {};
      const before = groupCpuSeconds(server.pid, split);
      const result = await fixed(urls[arm], requests);
      if (result.non2xx || result.errors) throw new Error(`${arm}: ${result.non2xx} non-2xx, ${result.errors} errors`);
      const loaded = groupCpuSeconds(server.pid);
      if (arm === "gateway") await drainMetering(base);
      else await sleep(2500); // the same idle time as the drain, so idle ticks weigh alike
      console.log(
        `  ${arm}: after the load ${fmt(((groupCpuSeconds(server.pid) - loaded) * 1000) / requests)} ms per request more (metering, idle)`,
      );
      const after = {};
      perRequestMs[arm].push(((groupCpuSeconds(server.pid, after) - before) * 1000) / requests);
      console.log(
        `  ${arm}: ${Object.keys(after)
          .map((k) => `${k} ${fmt(((after[k] - (split[k] ?? 0)) * 1000) / requests)} ms`)
          .join(", ")}`,
      );
    }
    const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const g = mean(perRequestMs.gateway);
    const b = mean(perRequestMs.baseline);
    load.after = loadavg().map((v) => Number(v.toFixed(2)));
    console.log(
      `\ncpu results (${startedAt.toISOString()}; load average before ${load.before.join(" ")}, after ${load.after.join(" ")})`,
    );
    console.log(`| B1 CPU per request | ms (wrangler + workerd) | ${fmt(g)} | ${fmt(b)} | ${fmt(g / b)}× |`);
    console.log(
      `  rounds: gateway ${perRequestMs.gateway.map((v) => fmt(v)).join(", ")}; baseline ${perRequestMs.baseline.map((v) => fmt(v)).join(", ")}`,
    );
  } finally {
    await server.stop();
  }
}

/** `--only log-modes`: B1/B2 with LOG_REQUESTS=all and =errors, each on its own server. */
async function logModesOnly({ startedAt, load, issuer, jwks, token }) {
  const results = [];
  for (const mode of ["all", "errors"]) {
    console.log(`B1/B2 with LOG_REQUESTS=${mode} …`);
    results.push(await measureLogMode({ issuer, jwks, token, mode }));
  }
  const rows = [];
  const add = (bench, metric, gateway, baseline, ratioValue, goal, met) =>
    rows.push({ bench, metric, gateway, baseline, ratio: ratioValue, goal, met });
  const summary = logModeRows(results, add);
  load.after = loadavg().map((v) => Number(v.toFixed(2)));
  console.log(
    `\nlog-modes results (${startedAt.toISOString()}; load average before ${load.before.join(" ")}, after ${load.after.join(" ")})`,
  );
  for (const row of rows) {
    const met = row.met === null ? "" : row.met ? "yes" : "NO";
    console.log(
      `| ${row.bench} | ${row.metric} | ${fmt(row.gateway)} | ${fmt(row.baseline)} | ${fmt(row.ratio)}× | ${row.goal} | ${met} |`,
    );
  }
  const dir = join(PROJECT_ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${startedAt.toISOString().replaceAll(":", "-")}-log-modes.json`);
  const machine = { cpus: cpus().length, node: process.version, loadAverage: load };
  writeFileSync(
    file,
    `${JSON.stringify({ startedAt: startedAt.toISOString(), machine, logModes: summary, rows }, null, 2)}\n`,
  );
  console.log(`\nwrote ${file}`);
}

/** `--only b7|b5-bundles|b9`: one of them by itself, on its own server (a quick look; no B0–B6). */
async function mainOnly() {
  const startedAt = new Date();
  const load = { before: loadavg().map((v) => Number(v.toFixed(2))) };
  console.log(`bench (${ONLY} only): ${cpus().length} CPUs, load average ${load.before.join(" ")}`);
  const { privateJwk, publicJwk } = await newSigningKey("bench-es256");
  const issuer = `https://issuer.bench.local/${randomUUID()}`;
  const token = await mintToken(privateJwk, { subject: `bench|${randomUUID()}`, issuer, expiresIn: 3600 });
  if (ONLY === "log-modes") return logModesOnly({ startedAt, load, issuer, jwks: { keys: [publicJwk] }, token });
  if (ONLY === "b4") return b4Only({ startedAt, load, issuer, jwks: { keys: [publicJwk] }, token });
  if (ONLY === "cpu") return cpuOnly({ startedAt, load, issuer, jwks: { keys: [publicJwk] }, token });
  const server = await startBenchServer({ issuer, jwks: { keys: [publicJwk] } });
  try {
    const api = client(server.baseUrl, token);
    const created = await expectStatus(api("POST", "/v1/agents", { name: "bench" }), 201, "create agent");
    const agentId = created.data.agent.id;
    await deployAndWait(api, agentId, { moduleCode: BENCH_AGENT_MODULE });
    const rows = [];
    const addRow = (bench, metric, gateway, baseline = null) => rows.push({ bench, metric, gateway, baseline });
    let summary;
    if (ONLY === "b7") {
      console.log(`B7: one run of ${RUN_EVENTS + 1} events, then ${RESUMES} resumes at two positions …`);
      summary = b7Rows(await measureB7({ base: server.baseUrl, api, agentId, token }), addRow);
    } else if (ONLY === "b5-bundles") {
      console.log(`B5: ${BUNDLE_DEPLOYS} deploys of each bundle size (${BUNDLE_MIB.join(", ")} MiB) …`);
      summary = extraRows({ bundleDeploys: await measureBundleDeploys(api) }, addRow);
    } else {
      console.log(`B9: ${EGRESS_CALLS} outbound calls per arm …`);
      summary = extraRows({ egress: await measureEgressDoor(server.baseUrl, api) }, addRow);
    }
    load.after = loadavg().map((v) => Number(v.toFixed(2)));
    console.log(
      `\n${ONLY} results (${startedAt.toISOString()}; load average before ${load.before.join(" ")}, after ${load.after.join(" ")})`,
    );
    for (const row of rows)
      console.log(`| ${row.bench} | ${row.metric} | ${fmt(row.gateway)} | ${fmt(row.baseline)} |`);
    const dir = join(PROJECT_ROOT, "bench", "results");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${startedAt.toISOString().replaceAll(":", "-")}-${ONLY}.json`);
    const result = {
      startedAt: startedAt.toISOString(),
      machine: { cpus: cpus().length, node: process.version, loadAverage: load },
      settings: { resumes: RESUMES, runEvents: RUN_EVENTS, bundleDeploys: BUNDLE_DEPLOYS, egressCalls: EGRESS_CALLS },
      [ONLY]: summary,
      rows,
    };
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nwrote ${file}`);
  } finally {
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const startedAt = new Date();
  const load = { before: loadavg().map((v) => Number(v.toFixed(2))) };
  const phaseTimes = {};
  const timed = async (name, fn) => {
    const t = performance.now();
    const value = await fn();
    phaseTimes[name] = Number(((performance.now() - t) / 1000).toFixed(1));
    return value;
  };
  console.log(`bench: ${cpus().length} CPUs, load average ${load.before.join(" ")}`);

  console.log("B6: building the production bundle (dry run) and profiling its startup …");
  const bundle = await timed("b6Bundle", measureBundle);
  const startup = await timed("b6Startup", measureStartup);

  const { privateJwk, publicJwk } = await newSigningKey("bench-es256");
  const issuer = `https://issuer.bench.local/${randomUUID()}`;
  const token = await mintToken(privateJwk, { subject: `bench|${randomUUID()}`, issuer, expiresIn: 3600 });

  console.log("starting wrangler dev …");
  const serverStarted = performance.now();
  const server = await startBenchServer({ issuer, jwks: { keys: [publicJwk] } });
  const serverReadySeconds = (performance.now() - serverStarted) / 1000;
  try {
    const base = server.baseUrl;
    const api = client(base, token);
    const created = await expectStatus(api("POST", "/v1/agents", { name: "bench" }), 201, "create agent");
    const agentId = created.data.agent.id;

    // B5 first: it also leaves the bench agent deployed (the last deployment is the active one).
    console.log(`B5: ${DEPLOYS} deploys to active …`);
    const deploySeconds = [];
    let deploymentId;
    await timed("b5", async () => {
      for (let i = 0; i < DEPLOYS; i++) {
        const d = await deployAndWait(api, agentId, { moduleCode: `${BENCH_AGENT_MODULE}\n// deploy ${i}` });
        deploySeconds.push(d.seconds);
        deploymentId = d.id;
      }
    });

    let invokeCredential = token;
    if (WITH_API_KEY) {
      const body = { name: "bench", scopes: ["invoke"], agentIds: [agentId] };
      invokeCredential = (await expectStatus(api("POST", "/v1/api-keys", body), 201, "create API key")).data.key;
    }
    const invokeHeaders = { authorization: `Bearer ${invokeCredential}`, "content-type": "application/json" };
    const gatewayUrl = `${base}/v1/invoke/${agentId}`;
    const baselineUrl = `${base}/__bench/baseline/${deploymentId}`;
    // Both arms must answer the same thing before anything is measured.
    const viaGateway = await expectStatus(api("POST", `/v1/invoke/${agentId}`, JSON.parse(INVOKE_BODY)), 200, "invoke");
    const viaBaseline = await expectStatus(
      client(base)("POST", `/__bench/baseline/${deploymentId}`, JSON.parse(INVOKE_BODY)),
      200,
      "baseline",
    );
    if (JSON.stringify(viaGateway.data) !== JSON.stringify(viaBaseline.data)) {
      throw new Error(
        `gateway and baseline answer differently: ${JSON.stringify([viaGateway.data, viaBaseline.data])}`,
      );
    }

    // B1 + B3: warm both arms, let the warm-up's metering land, then alternate rounds: latency with
    // one connection (what one call pays), throughput with CONNECTIONS (the machine saturated).
    console.log(
      `B1/B3: invoke, latency with 1 connection and throughput with ${CONNECTIONS}, 2 × ${SECONDS} s per arm each …`,
    );
    const b1 = await timed("b1", async () => {
      const phase = (url, connections) =>
        loadPhase({ url, headers: invokeHeaders, body: INVOKE_BODY, seconds: SECONDS, connections });
      await loadPhase({ url: baselineUrl, headers: invokeHeaders, body: INVOKE_BODY, seconds: WARMUP_SECONDS });
      await loadPhase({ url: gatewayUrl, headers: invokeHeaders, body: INVOKE_BODY, seconds: WARMUP_SECONDS });
      await drainMetering(base);
      await fetch(`${base}/__bench/d1-statements/reset`, { method: "POST" });
      const arms = { latency: { gateway: [], baseline: [] }, throughput: { gateway: [], baseline: [] } };
      for (const [kind, connections] of [
        ["latency", 1],
        ["throughput", CONNECTIONS],
      ]) {
        for (const arm of ["baseline", "gateway", "gateway", "baseline"]) {
          arms[kind][arm].push(await phase(arm === "gateway" ? gatewayUrl : baselineUrl, connections));
        }
      }
      await drainMetering(base);
      const statements = await d1Statements(base);
      const gatewayInvocations = [...arms.latency.gateway, ...arms.throughput.gateway].reduce(
        (n, p) => n + p.samples.length + p.errors,
        0,
      );
      return {
        latency: { gateway: combine(arms.latency.gateway), baseline: combine(arms.latency.baseline) },
        throughput: { gateway: combine(arms.throughput.gateway), baseline: combine(arms.throughput.baseline) },
        statements,
        gatewayInvocations,
      };
    });

    // B0 (context for B1): the fixed cost of any gateway request — the Hono app, the request id
    // and the one log line per request — as GET /healthz against the bench's GET no-op.
    console.log("B0: /healthz against the no-op …");
    const b0 = await timed("b0", async () => {
      const phase = (url, connections) => loadPhase({ url, method: "GET", seconds: B0_SECONDS, connections });
      await phase(`${base}/healthz`, 1);
      const out = { latency: {}, throughput: {} };
      for (const [kind, connections] of [
        ["latency", 1],
        ["throughput", CONNECTIONS],
      ]) {
        const rounds = { gateway: [], baseline: [] };
        for (const arm of ["baseline", "gateway", "gateway", "baseline"]) {
          rounds[arm].push(await phase(arm === "gateway" ? `${base}/healthz` : `${base}/__bench/noop`, connections));
        }
        out[kind] = { gateway: combine(rounds.gateway), baseline: combine(rounds.baseline) };
      }
      return out;
    });

    console.log(`B2: ${STREAMS} streams per arm, one at a time …`);
    const b2 = await timed("b2", async () => {
      const headers = { ...invokeHeaders, accept: "text/event-stream" };
      await streamPhase(`${baselineUrl}/stream`, headers, 20);
      await streamPhase(`${gatewayUrl}/stream`, headers, 20);
      const half = Math.ceil(STREAMS / 2);
      const baseline = [await streamPhase(`${baselineUrl}/stream`, headers, half)];
      const gateway = [await streamPhase(`${gatewayUrl}/stream`, headers, half)];
      gateway.push(await streamPhase(`${gatewayUrl}/stream`, headers, half));
      baseline.push(await streamPhase(`${baselineUrl}/stream`, headers, half));
      return { gateway: combine(gateway), baseline: combine(baseline) };
    });

    console.log(`B4: telemetry ingest, single events and batches of 100, ${SECONDS} s per arm …`);
    const b4 = await timed("b4", () => measureB4({ base, api, agentId, deploymentId }));

    console.log(`B7: one run of ${RUN_EVENTS + 1} events, then ${RESUMES} resumes at two positions …`);
    const b7 = await timed("b7", () => measureB7({ base, api, agentId, token }));

    console.log(`B5: ${BUNDLE_DEPLOYS} deploys of each bundle size (${BUNDLE_MIB.join(", ")} MiB) …`);
    const bundleDeploys = await timed("b5Bundles", () => measureBundleDeploys(api));
    console.log(`B9: ${EGRESS_CALLS} outbound calls per arm through the egress door and directly …`);
    const egress = await timed("b9", () => measureEgressDoor(base, api));

    // B1/B2 again on a server with LOG_REQUESTS=errors (the goals apply there; the rows above are `all`).
    console.log("B1/B2 with LOG_REQUESTS=errors, on a second server …");
    const errorsMode = await timed("logModeErrors", () =>
      measureLogMode({ issuer, jwks: { keys: [publicJwk] }, token, mode: "errors" }),
    );

    const loadAfter = loadavg().map((v) => Number(v.toFixed(2)));
    load.after = loadAfter;
    report({
      startedAt,
      load,
      phaseTimes,
      serverReadySeconds,
      bundle,
      startup,
      b0,
      b1,
      b2,
      b4,
      b7,
      deploySeconds,
      bundleDeploys,
      egress,
      errorsMode,
    });
  } finally {
    await server.stop();
  }
}

function fmt(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return typeof v === "number" ? v.toFixed(digits) : String(v);
}

function report(r) {
  const rows = [];
  const add = (bench, metric, gateway, baseline, ratioValue, goal, met) =>
    rows.push({ bench, metric, gateway, baseline, ratio: ratioValue, goal, met });

  const g1 = summarize(r.b1.latency.gateway.samples, r.b1.latency.gateway.seconds, {
    errors: r.b1.latency.gateway.errors,
  });
  const b1 = summarize(r.b1.latency.baseline.samples, r.b1.latency.baseline.seconds, {
    errors: r.b1.latency.baseline.errors,
  });
  const g1t = summarize(r.b1.throughput.gateway.samples, r.b1.throughput.gateway.seconds, {
    errors: r.b1.throughput.gateway.errors,
  });
  const b1t = summarize(r.b1.throughput.baseline.samples, r.b1.throughput.baseline.seconds, {
    errors: r.b1.throughput.baseline.errors,
  });
  const b1Ratios = {
    p50: ratio(g1.p50Ms, b1.p50Ms),
    p99: ratio(g1.p99Ms, b1.p99Ms),
    throughput: ratio(g1t.perSecond, b1t.perSecond),
    p50Saturated: ratio(g1t.p50Ms, b1t.p50Ms),
  };
  add(
    "B1 invoke JSON",
    "p50 ms, 1 conn",
    g1.p50Ms,
    b1.p50Ms,
    b1Ratios.p50,
    `≤ ${GOALS.b1P50}×`,
    b1Ratios.p50 <= GOALS.b1P50,
  );
  add("B1 invoke JSON", "p99 ms, 1 conn", g1.p99Ms, b1.p99Ms, b1Ratios.p99, "", null);
  add(
    "B1 invoke JSON",
    `req/s, ${CONNECTIONS} conn`,
    g1t.perSecond,
    b1t.perSecond,
    b1Ratios.throughput,
    `≥ ${GOALS.b1Throughput}×`,
    b1Ratios.throughput >= GOALS.b1Throughput,
  );
  add("B1 invoke JSON", `p50 ms, ${CONNECTIONS} conn`, g1t.p50Ms, b1t.p50Ms, b1Ratios.p50Saturated, "", null);

  const b0 = {};
  for (const kind of ["latency", "throughput"]) {
    b0[kind] = {
      gateway: summarize(r.b0[kind].gateway.samples, r.b0[kind].gateway.seconds),
      baseline: summarize(r.b0[kind].baseline.samples, r.b0[kind].baseline.seconds),
    };
  }
  const b0Ratios = {
    p50: ratio(b0.latency.gateway.p50Ms, b0.latency.baseline.p50Ms),
    throughput: ratio(b0.throughput.gateway.perSecond, b0.throughput.baseline.perSecond),
  };
  add(
    "B0 /healthz vs no-op",
    "p50 ms, 1 conn",
    b0.latency.gateway.p50Ms,
    b0.latency.baseline.p50Ms,
    b0Ratios.p50,
    "",
    null,
  );
  add(
    "B0 /healthz vs no-op",
    `req/s, ${CONNECTIONS} conn`,
    b0.throughput.gateway.perSecond,
    b0.throughput.baseline.perSecond,
    b0Ratios.throughput,
    "",
    null,
  );

  // What the invoke path adds beyond the fixed cost every gateway request pays here (B0).
  const beyondFloor = {
    p50Ms: g1.p50Ms - b1.p50Ms - (b0.latency.gateway.p50Ms - b0.latency.baseline.p50Ms),
    msPerRequestAtSaturation:
      1000 / g1t.perSecond -
      1000 / b1t.perSecond -
      (1000 / b0.throughput.gateway.perSecond - 1000 / b0.throughput.baseline.perSecond),
  };

  const g2 = summarize(r.b2.gateway.samples, r.b2.gateway.seconds);
  const b2 = summarize(r.b2.baseline.samples, r.b2.baseline.seconds);
  const b2Ratios = {
    p50: ratio(g2.p50Ms, b2.p50Ms),
    p99: ratio(g2.p99Ms, b2.p99Ms),
    throughput: ratio(g2.perSecond, b2.perSecond),
  };
  add(
    "B2 first SSE event",
    "p50 ms",
    g2.p50Ms,
    b2.p50Ms,
    b2Ratios.p50,
    `≤ ${GOALS.b2FirstEvent}×`,
    b2Ratios.p50 <= GOALS.b2FirstEvent,
  );
  add("B2 first SSE event", "p99 ms", g2.p99Ms, b2.p99Ms, b2Ratios.p99, "", null);
  add("B2 first SSE event", "streams/s", g2.perSecond, b2.perSecond, b2Ratios.throughput, "", null);

  const invocations = r.b1.gatewayInvocations;
  const s = r.b1.statements;
  const b3 = {
    invocations,
    reads: s.reads,
    writes: s.writes,
    readsPerInvocation: s.reads / invocations,
    writesPerInvocation: s.writes / invocations,
  };
  add(
    "B3 D1 per invocation",
    "reads",
    b3.readsPerInvocation,
    null,
    null,
    `≤ ${GOALS.b3Reads}`,
    b3.readsPerInvocation <= GOALS.b3Reads,
  );
  add(
    "B3 D1 per invocation",
    "writes",
    b3.writesPerInvocation,
    null,
    null,
    `≤ ${GOALS.b3Writes}`,
    b3.writesPerInvocation <= GOALS.b3Writes,
  );

  const b4 = b4Rows(r.b4, add);

  const deploySorted = [...r.deploySeconds].sort((a, b) => a - b);
  const b5 = { runs: deploySorted.length, p50Seconds: percentile(deploySorted, 50), maxSeconds: deploySorted.at(-1) };
  add(
    "B5 deploy to active",
    "p50 s",
    b5.p50Seconds,
    null,
    null,
    `< ${GOALS.b5Seconds} s`,
    b5.p50Seconds < GOALS.b5Seconds,
  );

  add(
    "B6 bundle",
    "gzip KB",
    r.bundle.gzipBytes / 1000,
    null,
    null,
    `< ${GOALS.b6GzipBytes / 1000} KB`,
    r.bundle.gzipBytes < GOALS.b6GzipBytes,
  );
  add("B6 cold start", "startup CPU ms", r.startup.activeMs, null, null, "", null);
  const b7 = b7Rows(r.b7, add);
  const extras = extraRows(r, add);
  const logModes = logModeRows([r.errorsMode], add);

  console.log(
    `\nbench results (${r.startedAt.toISOString()}; load average before ${r.load.before.join(" ")}, after ${r.load.after.join(" ")})`,
  );
  const header = ["benchmark", "metric", "gateway", "baseline", "ratio", "goal", "met"];
  const lines = rows.map((row) => [
    row.bench,
    row.metric,
    fmt(row.gateway, row.metric === "reads" || row.metric === "writes" ? 4 : 2),
    fmt(row.baseline),
    row.ratio === null ? "" : `${fmt(row.ratio)}×`,
    row.goal,
    row.met === null ? "" : row.met ? "yes" : "NO",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const l of lines) console.log(line(l));
  console.log(
    `\nB1: ${g1.n + g1t.n} gateway / ${b1.n + b1t.n} baseline requests (errors ${g1.errors + g1t.errors} / ${b1.errors + b1t.errors}); ` +
      `B1 beyond the B0 floor: ${fmt(beyondFloor.p50Ms)} ms at p50 (1 conn), ${fmt(beyondFloor.msPerRequestAtSaturation)} ms per request at saturation; ` +
      `B3: ${b3.reads} reads + ${b3.writes} writes over ${b3.invocations} invocations; ` +
      `B6: ${r.bundle.rawBytes} bytes raw, ${r.bundle.gzipBytes} gzip -9 (wrangler: ${r.bundle.wranglerReported?.gzipKiB ?? "?"} KiB gzip), ` +
      `startup CPU ${fmt(r.startup.activeMs, 1)} ms incl. ${fmt(r.startup.gcMs, 1)} ms GC (wrangler check startup); ` +
      `dev server ready in ${r.serverReadySeconds.toFixed(1)} s; phases ${JSON.stringify(r.phaseTimes)}`,
  );

  const result = {
    startedAt: r.startedAt.toISOString(),
    machine: { cpus: cpus().length, node: process.version, loadAverage: r.load },
    settings: {
      seconds: SECONDS,
      connections: CONNECTIONS,
      streams: STREAMS,
      streamConcurrency: STREAM_CONCURRENCY,
      invokeCredential: WITH_API_KEY ? "api_key" : "jwt",
    },
    goals: GOALS,
    b0: { ...b0, ratios: b0Ratios },
    b1: {
      latency: { gateway: g1, baseline: b1 },
      throughput: { gateway: g1t, baseline: b1t },
      ratios: b1Ratios,
      beyondFloor,
    },
    b2: { gateway: g2, baseline: b2, ratios: b2Ratios },
    b3,
    b4,
    b5: { ...b5, samples: r.deploySeconds },
    b6: { bundle: r.bundle, startup: r.startup, devServerReadySeconds: r.serverReadySeconds },
    b7,
    ...extras,
    logModes,
    rows,
    phaseSeconds: r.phaseTimes,
  };
  const dir = join(PROJECT_ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${r.startedAt.toISOString().replaceAll(":", "-")}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
}

(ONLY !== null ? mainOnly() : main()).catch((err) => {
  console.error(`bench failed: ${err.stack ?? err.message}`);
  process.exitCode = 1;
});
