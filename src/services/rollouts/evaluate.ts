// The rollout evaluator, run by the cron every minute (src/cron/scheduled.ts): for each running
// rollout, the gateway's own measurements of the candidate and the baseline in the current
// stage's window (metrics_events, source 'gateway', kind 'invoke': what the split routed), then
// one decision:
//  - abort when the candidate breaches abortOn (error rate above maxErrorRatePct, or p95 duration
//    above maxP95Ms) over at least minRequests requests — at any time in the stage;
//  - else, once the stage's minDurationSeconds have passed: advance to the next stage, or after
//    the last one complete (the candidate becomes active through the activation's pointer move);
//  - else record the measurements and wait.
// A rollout whose agent was deleted, or whose baseline is no longer the active deployment (an
// activation or an automatic deploy moved the pointer), is aborted: its split no longer applies.
// The clock is a parameter, so tests move time instead of waiting for stages.
//
// Every read is bounded: at most MAX_ROLLOUTS_PER_RUN rollouts per run (the least recently
// evaluated first, through rollouts_running_updated_idx: every evaluation touches updated_at, so
// none starves), and per deployment at most MAX_WINDOW_EVENTS of the
// newest events of the window, read through metrics_events_agent_ts_idx (pinned with INDEXED BY,
// so the planner never walks a deployment's whole history through the dedupe index).

import { asc, eq, type SQL, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { agents, type RolloutRow, rollouts } from "../../db/schema";
import { describeError, logError } from "../../lib/logger";
import type { WebhookQueue } from "../webhooks/queue";
import { EVALUATOR_ACTOR } from "./rollout-events";
import { abortRollout, advanceRollout, completeRollout, noteEvaluation, touchRollout } from "./rollouts";

export const MAX_ROLLOUTS_PER_RUN = 100;
/** Newest events of a stage window measured per deployment (a busy stage is judged on these). */
export const MAX_WINDOW_EVENTS = 20_000;

export type WindowMeasurement = {
  requests: number;
  errors: number;
  errorRatePct: number | null;
  p95Ms: number | null;
};

export type Evaluation = {
  at: number;
  stageIndex: number;
  windowStart: number;
  candidate: WindowMeasurement;
  baseline: WindowMeasurement;
  decision: "abort" | "advance" | "complete" | "wait";
};

export type EvaluationReport = {
  evaluated: number;
  advanced: number;
  aborted: number;
  completed: number;
  failed: number;
};

/** Evaluates every running rollout (at most MAX_ROLLOUTS_PER_RUN) at time `now`. */
export async function evaluateRollouts(
  db: Db,
  opts: { now?: number; webhookQueue?: WebhookQueue } = {},
): Promise<EvaluationReport> {
  const now = opts.now ?? Date.now();
  const report: EvaluationReport = { evaluated: 0, advanced: 0, aborted: 0, completed: 0, failed: 0 };
  const running = await db
    .select({
      rollout: rollouts,
      agentDeletedAt: agents.deletedAt,
      agentStatus: agents.status,
      activeDeploymentId: agents.activeDeploymentId,
    })
    .from(rollouts)
    .innerJoin(agents, eq(agents.id, rollouts.agentId))
    .where(eq(rollouts.status, "running"))
    .orderBy(asc(rollouts.updatedAt))
    .limit(MAX_ROLLOUTS_PER_RUN);
  for (const { rollout, agentDeletedAt, agentStatus, activeDeploymentId } of running) {
    let outcome: Evaluation["decision"] | "none" = "none";
    try {
      const agent = { agentDeletedAt, agentStatus, activeDeploymentId };
      outcome = await evaluateOne(db, rollout, agent, now, opts.webhookQueue);
      report.evaluated++;
      if (outcome === "abort") report.aborted++;
      if (outcome === "advance") report.advanced++;
      if (outcome === "complete") report.completed++;
    } catch (err) {
      // One rollout's failure (a D1 hiccup) must not stop the others; the next run tries again.
      report.failed++;
      logError("rollout_evaluation_failed", { rolloutId: rollout.id, error: describeError(err) });
    }
    // The run takes the least recently evaluated first: a rollout that nothing moved (or whose
    // evaluation failed) goes to the back, so it can never hold the others' places every minute.
    if (outcome === "none") await touchRollout(db, rollout, now).catch(() => {});
  }
  return report;
}

async function evaluateOne(
  db: Db,
  row: RolloutRow,
  agent: { agentDeletedAt: number | null; agentStatus: string; activeDeploymentId: string | null },
  now: number,
  webhookQueue: WebhookQueue | undefined,
): Promise<Evaluation["decision"] | "none"> {
  const deps = { db, actor: EVALUATOR_ACTOR, now, webhookQueue };
  if (agent.agentDeletedAt !== null) {
    return (await abortRollout(deps, row, { reason: "the agent was deleted" })) ? "abort" : "none";
  }
  if (agent.agentStatus !== "active") {
    // A disabled agent serves nobody, and its rollout could never complete (the pointer moves only
    // for an enabled agent): it ends here, like a deleted agent's.
    return (await abortRollout(deps, row, { reason: "the agent was disabled" })) ? "abort" : "none";
  }
  if (agent.activeDeploymentId !== row.baselineDeploymentId) {
    const reason = `the agent's active deployment changed outside the rollout (now ${agent.activeDeploymentId ?? "none"}, was ${row.baselineDeploymentId})`;
    return (await abortRollout(deps, row, { reason })) ? "abort" : "none";
  }
  const stage = row.stages[row.stageIndex];
  if (!stage) return "none";
  const evaluation = await measureStage(db, row, now);
  const breach = breachOf(row, evaluation.candidate);
  const expectStage = row.stageIndex;
  if (breach) {
    evaluation.decision = "abort";
    return (await abortRollout(deps, row, { reason: breach, evaluation, expectStage })) ? "abort" : "none";
  }
  if (now - row.stageStartedAt < stage.minDurationSeconds * 1000) {
    await noteEvaluation(db, row, evaluation, now);
    return "wait";
  }
  const summary = `stage ${row.stageIndex + 1} (${stage.percent}%) passed: ${describe(evaluation.candidate)} on the candidate`;
  if (row.stageIndex + 1 >= row.stages.length) {
    evaluation.decision = "complete";
    const done = await completeRollout(deps, row, {
      reason: `${summary}; the candidate is active`,
      evaluation,
      expectStage,
    });
    return done ? "complete" : "none";
  }
  evaluation.decision = "advance";
  const next = row.stages[row.stageIndex + 1];
  const moved = await advanceRollout(deps, row, {
    reason: `${summary}; now ${next?.percent}%`,
    evaluation,
    expectStage,
  });
  return moved ? "advance" : "none";
}

/** Why the candidate's measurements breach abortOn, or null (always null below minRequests). */
export function breachOf(row: Pick<RolloutRow, "abortOn">, m: WindowMeasurement): string | null {
  const { maxErrorRatePct, maxP95Ms, minRequests } = row.abortOn;
  if (m.requests < minRequests) return null;
  if (maxErrorRatePct !== undefined && m.errorRatePct !== null && m.errorRatePct > maxErrorRatePct) {
    return `the candidate's error rate ${round(m.errorRatePct)}% exceeded maxErrorRatePct ${maxErrorRatePct}% (${m.errors} of ${m.requests} requests failed)`;
  }
  if (maxP95Ms !== undefined && m.p95Ms !== null && m.p95Ms > maxP95Ms) {
    return `the candidate's p95 duration ${m.p95Ms} ms exceeded maxP95Ms ${maxP95Ms} ms (over ${m.requests} requests)`;
  }
  return null;
}

const round = (n: number) => Math.round(n * 100) / 100;

function describe(m: WindowMeasurement): string {
  if (m.requests === 0) return "no requests";
  return `${m.requests} requests, ${round(m.errorRatePct ?? 0)}% errors, p95 ${m.p95Ms ?? "?"} ms`;
}

/** The candidate's and the baseline's measurements in the stage's window [stageStartedAt, now). */
export async function measureStage(db: Db, row: RolloutRow, now: number): Promise<Evaluation> {
  const window = { agentId: row.agentId, from: row.stageStartedAt, to: now };
  const [candidate, baseline] = await Promise.all([
    measureWindow(db, { ...window, deploymentId: row.candidateDeploymentId }),
    measureWindow(db, { ...window, deploymentId: row.baselineDeploymentId }),
  ]);
  return {
    at: now,
    stageIndex: row.stageIndex,
    windowStart: row.stageStartedAt,
    candidate,
    baseline,
    decision: "wait",
  };
}

/** The newest MAX_WINDOW_EVENTS routed invocations of one deployment in [from, to), as a subquery. */
function windowEvents(input: { agentId: string; deploymentId: string; from: number; to: number }): SQL {
  return sql`SELECT status, duration_ms FROM metrics_events INDEXED BY metrics_events_agent_ts_idx
    WHERE agent_id = ${input.agentId} AND ts >= ${input.from} AND ts < ${input.to}
      AND deployment_id = ${input.deploymentId} AND source = 'gateway' AND kind = 'invoke'
    ORDER BY ts DESC LIMIT ${MAX_WINDOW_EVENTS}`;
}

export async function measureWindow(
  db: Db,
  input: { agentId: string; deploymentId: string; from: number; to: number },
): Promise<WindowMeasurement> {
  const events = windowEvents(input);
  const [counts] = await db.all<{ requests: number; errors: number | null }>(
    sql`SELECT COUNT(*) AS requests, SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors FROM (${events})`,
  );
  const requests = Number(counts?.requests ?? 0);
  const errors = Number(counts?.errors ?? 0);
  if (requests === 0) return { requests: 0, errors: 0, errorRatePct: null, p95Ms: null };
  // Nearest-rank p95: the value at rank ceil(0.95 n) in ascending order.
  const rank = Math.ceil(0.95 * requests);
  const [p95] = await db.all<{ d: number | null }>(
    sql`SELECT COALESCE(duration_ms, 0) AS d FROM (${events}) ORDER BY d ASC LIMIT 1 OFFSET ${rank - 1}`,
  );
  return { requests, errors, errorRatePct: (errors * 100) / requests, p95Ms: p95?.d ?? null };
}
