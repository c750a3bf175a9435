// Routes that exist only for `npm run bench`: only the bench entry (src/bench/entry.ts) serves
// them, on the local dev server scripts/bench.mjs starts. They run before the Hono app, so they do
// none of the gateway's work (no request log line, no auth, no validation, no routing, no metering):
//   POST /__bench/baseline/:deploymentId[/stream]  the deployment's loaded user worker, called as
//        the gateway calls it (same runtime provider, same request shape), its answer returned
//        untouched — the baseline that B1/B2 compare the invoke routes against
//   POST /__bench/noop                             reads the body, answers like a telemetry report
//        that stored nothing — the baseline for B4 (GET: the same answer, the baseline for B0)
//   GET  /__bench/d1-statements                    D1 statements run by this isolate (B3,
//        counted by ./statement-counter.ts on the binding the bench entry hands the gateway)
//   POST /__bench/d1-statements/reset
//   POST /__bench/reconcile-profile                `{ steps }`: that many reconciliation steps with each
//        of a step's statements run (and timed) on its own instead of in one batch — B8's look
//        inside the cron's slowest statement, then as many steps batched as the cron runs them; it
//        does the real work, so the watermark moves
//   POST /__bench/fetch                            `{ url, n }`: n sequential GETs of url from the
//        gateway's own isolate, each timed (ms) — the direct-fetch baseline of B9 (the egress door)
import { createDb } from "../db/client";
import { type Env, getConfig } from "../env";
import { ApiError, problemResponse } from "../lib/errors";
import { isIdOf } from "../lib/ids";
import { createRuntimeProvider } from "../runtime";
import type { InvokeTarget, RuntimeProviderName } from "../runtime/types";
import { loadDeploymentBundle } from "../services/deployments/bundle";
import type { DeploymentRow } from "../services/deployments/deployments";
import {
  highestParameter,
  RECONCILE_SLICE_EVENTS,
  RECONCILE_STEP_SQL,
  RECONCILE_SWEEP_KEYS,
} from "../services/metering/reconcile";
import { resetStatementCounts, statementCounts } from "./statement-counter";

export const BENCH_PATH_PREFIX = "/__bench/";

const INTERNAL_ORIGIN = "https://agent.webhost.internal";
const BASELINE_PATH = /^\/__bench\/baseline\/([a-z]{3}_[0-9a-z]{26})(\/stream)?$/;

/** The bench routes' answer for this request, or undefined when it is not one of them. */
export function benchFetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> | undefined {
  const path = new URL(request.url).pathname;
  if (!path.startsWith(BENCH_PATH_PREFIX)) return undefined;
  return handleBench(request, path, env, ctx);
}

async function handleBench(request: Request, path: string, env: Env, ctx: ExecutionContext): Promise<Response> {
  const baseline = BASELINE_PATH.exec(path);
  if (baseline?.[1] && request.method === "POST") {
    return invokeBaseline(request, env, ctx, baseline[1], baseline[2] !== undefined);
  }
  if (path === "/__bench/noop" && (request.method === "POST" || request.method === "GET")) {
    if (request.method === "POST") await request.arrayBuffer();
    return Response.json({ accepted: 0, queued: true });
  }
  if (path === "/__bench/d1-statements" && request.method === "GET") return Response.json(statementCounts());
  if (path === "/__bench/fetch" && request.method === "POST") return directFetches(request);
  if (path === "/__bench/reconcile-profile" && request.method === "POST") return reconcileProfile(request, env);
  if (path === "/__bench/d1-statements/reset" && request.method === "POST") {
    resetStatementCounts();
    return Response.json(statementCounts());
  }
  return problemResponse(new ApiError("route_not_found", `no route for ${request.method} ${path}`), "req_bench");
}

// Deployment id -> its row, read once: the baseline does no D1 work per call.
const deploymentRows = new Map<string, Promise<DeploymentRow | undefined>>();

async function invokeBaseline(
  request: Request,
  env: Env,
  ctx: ExecutionContext,
  deploymentId: string,
  stream: boolean,
): Promise<Response> {
  const config = await getConfig(env);
  const db = createDb(env.DB);
  if (!isIdOf("deployment", deploymentId)) return notFound(deploymentId);
  let pending = deploymentRows.get(deploymentId);
  if (!pending) {
    // A drizzle query runs again on every `then`: resolve it once into a real promise.
    pending = Promise.resolve(db.query.deployments.findFirst({ where: (d, { eq }) => eq(d.id, deploymentId) }));
    deploymentRows.set(deploymentId, pending);
    pending.then(
      (row) => row ?? deploymentRows.delete(deploymentId),
      () => deploymentRows.delete(deploymentId),
    );
  }
  const row = await pending;
  if (!row) return notFound(deploymentId);

  const target: InvokeTarget = {
    deploymentId: row.id,
    runtimeProvider: row.runtimeProvider as RuntimeProviderName,
    userId: row.userId,
    agentId: row.agentId,
    scriptName: row.scriptName,
    loadBundle: () => loadDeploymentBundle({ db, keyring: config.keyring, artifacts: env.ARTIFACTS }, row),
  };
  const upstream = new Request(`${INTERNAL_ORIGIN}${row.invokePath}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: stream ? "text/event-stream" : "application/json",
      "x-request-id": "req_bench",
    },
    body: await request.arrayBuffer(),
  });
  const plan = config.tierLimits.free;
  const runtime = createRuntimeProvider({ env, ctx, config });
  return runtime.invoke(target, upstream, { limits: { cpuMs: plan.cpuMs, subRequests: plan.subRequests } });
}

function notFound(deploymentId: string): Response {
  return problemResponse(new ApiError("not_found", `deployment ${deploymentId} not found`), "req_bench");
}

/** B9's baseline: the same outbound call an agent makes through the egress door, made directly. */
async function directFetches(request: Request): Promise<Response> {
  const { url, n } = (await request.json()) as { url: string; n: number };
  const samples: number[] = [];
  for (let i = 0; i < Math.min(n, 1000); i++) {
    const started = performance.now();
    await (await fetch(url)).arrayBuffer();
    samples.push(performance.now() - started);
  }
  return Response.json({ samples });
}

/** B8: each statement of a reconciliation step run and timed alone (ms per statement, per step). */
async function reconcileProfile(request: Request, env: Env): Promise<Response> {
  const { steps } = (await request.json()) as { steps: number };
  const params = [RECONCILE_SLICE_EVENTS, RECONCILE_SWEEP_KEYS, null, null, null, null, null, null, Date.now()];
  const out: number[][] = [];
  for (let i = 0; i < Math.min(steps, 50); i++) {
    const times: number[] = [];
    for (const sql of RECONCILE_STEP_SQL) {
      const started = performance.now();
      await env.DB.prepare(sql)
        .bind(...params.slice(0, highestParameter(sql)))
        .all();
      times.push(performance.now() - started);
    }
    out.push(times);
  }
  // The same steps as the cron runs them: one batch (one transaction) each.
  const batched: number[] = [];
  for (let i = 0; i < Math.min(steps, 50); i++) {
    const started = performance.now();
    await env.DB.batch(
      RECONCILE_STEP_SQL.map((sql) => env.DB.prepare(sql).bind(...params.slice(0, highestParameter(sql)))),
    );
    batched.push(performance.now() - started);
  }
  return Response.json({
    batched,
    statements: RECONCILE_STEP_SQL.map((s) => s.replace(/\s+/g, " ").trim().slice(0, 60)),
    steps: out,
  });
}
