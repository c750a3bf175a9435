// Canary rollouts of an agent: start, read, promote, abort; and the two transitions the evaluator
// (evaluate.ts) also makes: advance a stage, end the rollout. Every query is scoped by the
// caller's user id (another tenant's rollout is "not found"). Each transition is one conditional
// UPDATE (or one batch led by one) on a rollout that is still `running` (and, for the evaluator,
// still on the stage it measured), so the API and the cron can race without harm: whoever wins
// announces the change (rollout-events.ts), the other sees it ended.
// Routing reads the running rollout with the active pointer (services/invoke/route-cache.ts);
// every change here drops this isolate's cached route, and other isolates see it within 1 s.
import { and, desc, eq, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { selectRowWhere } from "../../db/insert-select";
import {
  agents,
  deployments,
  type RolloutAbortOn,
  type RolloutRow,
  type RolloutStage,
  rollouts,
} from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { isIdOf, newId } from "../../lib/ids";
import { getAgent } from "../agents/agents";
import { userActor } from "../audit/audit";
import { pointerMoveStatements } from "../deployments/deployments";
import { forgetAgentRoute } from "../invoke/route-cache";
import type { TenantDeps } from "../tenant";
import type { WebhookQueue } from "../webhooks/queue";
import { announceRolloutChange, type RolloutChange } from "./rollout-events";

export type { RolloutRow };

/** `webhookQueue`: where rollout lifecycle webhooks are queued (none: nothing is sent). */
export type RolloutDeps = TenantDeps & { now?: () => number; webhookQueue?: WebhookQueue };

export type RolloutInput = { deploymentId: string; stages: RolloutStage[]; abortOn: RolloutAbortOn };

export function rolloutNotFound(rolloutId: string): ApiError {
  return new ApiError("not_found", `rollout ${rolloutId.slice(0, 64)} not found`);
}

function isUniqueViolation(err: unknown): boolean {
  const text = err instanceof Error ? `${err.message} ${err.cause instanceof Error ? err.cause.message : ""}` : "";
  return /UNIQUE constraint failed/i.test(text);
}

function candidateProblem(detail: string, deploymentStatus?: string): ApiError {
  return new ApiError("invalid_rollout_candidate", detail, {
    errors: [{ location: "body.deploymentId", message: detail }],
    ...(deploymentStatus ? { extra: { deploymentStatus } } : {}),
  });
}

/**
 * Starts a rollout: the candidate (a `ready` or `inactive` deployment of this agent whose code is
 * still in the runtime) takes stage 1's percent of the traffic at once; the agent's active
 * deployment is the baseline. 409 rollout_in_progress when the agent has a running rollout (the
 * partial unique index decides, not a read), 409 no_active_deployment with no baseline.
 */
export async function startRollout(deps: RolloutDeps, agentId: string, input: RolloutInput): Promise<RolloutRow> {
  const agent = await getAgent(deps, agentId);
  if (agent.status === "disabled") throw new ApiError("agent_disabled", `agent ${agentId} is disabled`);
  const baseline = agent.activeDeploymentId;
  if (!baseline) {
    throw new ApiError("no_active_deployment", `agent ${agentId} has no active deployment to roll out from`);
  }
  const shown = input.deploymentId.slice(0, 64);
  const candidate = isIdOf("deployment", input.deploymentId)
    ? await deps.db.query.deployments.findFirst({
        where: and(
          eq(deployments.id, input.deploymentId),
          eq(deployments.agentId, agentId),
          eq(deployments.userId, deps.userId),
        ),
      })
    : undefined;
  // Another tenant's or another agent's deployment reads exactly like an unknown id.
  if (!candidate) throw candidateProblem(`deployment ${shown} is not a deployment of agent ${agentId}`);
  if (candidate.id === baseline || candidate.status === "active") {
    throw candidateProblem(`deployment ${candidate.id} is already the active deployment`, candidate.status);
  }
  if (candidate.status !== "ready" && candidate.status !== "inactive") {
    const why = candidate.status === "deploying" ? "it is still deploying" : "it failed to deploy";
    throw candidateProblem(`deployment ${candidate.id} cannot be rolled out: ${why}`, candidate.status);
  }
  if (candidate.scriptRemovedAt !== null) {
    throw candidateProblem(
      `deployment ${candidate.id} cannot be rolled out: its code was removed from the runtime (retention); deploy it again`,
      candidate.status,
    );
  }

  const now = deps.now?.() ?? Date.now();
  const row: RolloutRow = {
    id: newId("rollout", now),
    userId: deps.userId,
    agentId,
    candidateDeploymentId: candidate.id,
    baselineDeploymentId: baseline,
    status: "running",
    stages: input.stages,
    abortOn: input.abortOn,
    stageIndex: 0,
    stageStartedAt: now,
    endReason: null,
    endedAt: null,
    lastEvaluation: null,
    createdAt: now,
    updatedAt: now,
  };
  // Inserted only if, at that moment, the pointer still names the baseline, the agent is live and
  // enabled, and the candidate can still run (a concurrent activation or retention wins cleanly).
  let inserted: { id: string }[];
  try {
    inserted = await deps.db
      .insert(rollouts)
      .select(
        selectRowWhere(
          rollouts,
          row,
          sql`EXISTS (SELECT 1 FROM ${agents} WHERE ${agents.id} = ${agentId} AND ${agents.userId} = ${deps.userId}
                AND ${agents.deletedAt} IS NULL AND ${agents.status} = 'active' AND ${agents.activeDeploymentId} = ${baseline})
              AND EXISTS (SELECT 1 FROM ${deployments} WHERE ${deployments.id} = ${candidate.id}
                AND ${deployments.status} IN ('ready', 'inactive') AND ${deployments.scriptRemovedAt} IS NULL)`,
        ),
      )
      .returning({ id: rollouts.id });
  } catch (err) {
    if (isUniqueViolation(err)) {
      const running = await runningRolloutOf(deps, agentId);
      throw new ApiError(
        "rollout_in_progress",
        `agent ${agentId} already has a running rollout${running ? ` (${running.id})` : ""}; promote or abort it first`,
        running ? { extra: { rolloutId: running.id } } : {},
      );
    }
    throw err;
  }
  if (inserted.length === 0) {
    throw new ApiError("conflict", `agent ${agentId} or deployment ${candidate.id} changed meanwhile; try again`);
  }
  forgetAgentRoute({ userId: deps.userId, agentId });
  await announceRolloutChange(
    { db: deps.db, actor: userActor(deps.userId), now, webhookQueue: deps.webhookQueue },
    row,
    "started",
    `${input.stages[0]?.percent}% of the traffic to ${candidate.id}`,
  );
  return row;
}

async function runningRolloutOf(deps: TenantDeps, agentId: string): Promise<RolloutRow | undefined> {
  return deps.db.query.rollouts.findFirst({
    where: and(eq(rollouts.agentId, agentId), eq(rollouts.userId, deps.userId), eq(rollouts.status, "running")),
  });
}

export async function getRollout(deps: TenantDeps, agentId: string, rolloutId: string): Promise<RolloutRow> {
  await getAgent(deps, agentId);
  if (!isIdOf("rollout", rolloutId)) throw rolloutNotFound(rolloutId);
  const row = await deps.db.query.rollouts.findFirst({
    where: and(eq(rollouts.id, rolloutId), eq(rollouts.agentId, agentId), eq(rollouts.userId, deps.userId)),
  });
  if (!row) throw rolloutNotFound(rolloutId);
  return row;
}

/** The agent's rollouts, newest first (at most `limit`). */
export async function listRollouts(deps: TenantDeps, agentId: string, limit: number): Promise<RolloutRow[]> {
  await getAgent(deps, agentId);
  return deps.db
    .select()
    .from(rollouts)
    .where(and(eq(rollouts.agentId, agentId), eq(rollouts.userId, deps.userId)))
    .orderBy(desc(rollouts.createdAt), desc(rollouts.id))
    .limit(limit);
}

function ended(row: RolloutRow): ApiError {
  return new ApiError("rollout_ended", `rollout ${row.id} has already ended (${row.status})`, {
    extra: { rolloutStatus: row.status },
  });
}

/** POST …/promote: the candidate becomes active now (the remaining stages are skipped). */
export async function promoteRollout(deps: RolloutDeps, agentId: string, rolloutId: string): Promise<RolloutRow> {
  return endByUser(deps, agentId, rolloutId, "promoted", completeRollout, async () => {
    const agent = await getAgent(deps, agentId);
    if (agent.status === "disabled") throw new ApiError("agent_disabled", `agent ${agentId} is disabled`);
  });
}

/** POST …/abort: all traffic back to the baseline, the candidate `inactive`. */
export async function abortRolloutByUser(deps: RolloutDeps, agentId: string, rolloutId: string): Promise<RolloutRow> {
  return endByUser(deps, agentId, rolloutId, "aborted", abortRollout);
}

/**
 * The user's promote or abort of a running rollout: `end` is the transition (the evaluator makes
 * the same ones), `precheck` what must hold first. A rollout that ended meanwhile is 409
 * rollout_ended; one still running that could not move (the agent changed under a promote) is 409
 * conflict, to be retried.
 */
async function endByUser(
  deps: RolloutDeps,
  agentId: string,
  rolloutId: string,
  verb: "promoted" | "aborted",
  end: (deps: TransitionDeps, row: RolloutRow, opts: TransitionOpts) => Promise<boolean>,
  precheck?: () => Promise<void>,
): Promise<RolloutRow> {
  const row = await getRollout(deps, agentId, rolloutId);
  if (row.status !== "running") throw ended(row);
  await precheck?.();
  const done = await end(
    { db: deps.db, actor: userActor(deps.userId), now: deps.now?.() ?? Date.now(), webhookQueue: deps.webhookQueue },
    row,
    { reason: `${verb} by the user` },
  );
  if (!done) {
    const fresh = await getRollout(deps, agentId, rolloutId);
    if (fresh.status !== "running") throw ended(fresh);
    throw new ApiError("conflict", `rollout ${rolloutId} could not be ${verb}: the agent changed meanwhile; try again`);
  }
  return getRollout(deps, agentId, rolloutId);
}

export type TransitionDeps = { db: Db; actor: string; now: number; webhookQueue?: WebhookQueue };
type TransitionOpts = { reason: string; evaluation?: Record<string, unknown>; expectStage?: number };

/** The rollout is still running (and, for the evaluator, on the stage it measured). */
function stillRunning(row: RolloutRow, expectStage: number | undefined) {
  return and(
    eq(rollouts.id, row.id),
    eq(rollouts.status, "running"),
    expectStage === undefined ? undefined : eq(rollouts.stageIndex, expectStage),
  );
}

/** The evaluation a transition records, when the evaluator made it. */
function evaluated(opts: TransitionOpts): { lastEvaluation?: Record<string, unknown> } {
  return opts.evaluation ? { lastEvaluation: opts.evaluation } : {};
}

/** What ending a rollout writes to its row. */
function endColumns(status: "aborted" | "completed", opts: TransitionOpts, now: number) {
  return { status, endReason: opts.reason.slice(0, 1000), endedAt: now, updatedAt: now, ...evaluated(opts) };
}

/**
 * The close of every transition: this isolate's cached route is dropped whatever happened (a lost
 * race may still have changed the route), and only the winner (`after`, the updated row) announces
 * the change. True when this caller made it.
 */
async function settled(
  deps: TransitionDeps,
  row: RolloutRow,
  after: RolloutRow | undefined,
  change: RolloutChange,
  reason: string,
): Promise<boolean> {
  forgetAgentRoute({ userId: row.userId, agentId: row.agentId });
  if (!after) return false;
  await announceRolloutChange(deps, after, change, reason);
  return true;
}

/**
 * Ends a running rollout as aborted: traffic goes back to the baseline (the route no longer
 * names the rollout), and a `ready` candidate becomes `inactive` in the same batch. False when
 * the rollout had already ended (or moved on from `expectStage`).
 */
export async function abortRollout(deps: TransitionDeps, row: RolloutRow, opts: TransitionOpts): Promise<boolean> {
  const { db, now } = deps;
  const [aborted] = await db.batch([
    db
      .update(rollouts)
      .set(endColumns("aborted", opts, now))
      .where(stillRunning(row, opts.expectStage))
      .returning(),
    db
      .update(deployments)
      .set({ status: "inactive", updatedAt: now })
      .where(
        and(
          eq(deployments.id, row.candidateDeploymentId),
          eq(deployments.status, "ready"),
          sql`EXISTS (SELECT 1 FROM ${rollouts} WHERE ${rollouts.id} = ${row.id} AND ${rollouts.status} = 'aborted' AND ${rollouts.endedAt} = ${now})`,
        ),
      ),
  ]);
  return settled(deps, row, aborted[0], "aborted", opts.reason);
}

/**
 * Ends a running rollout as completed: the candidate becomes active through the same pointer
 * move as an activation (deployments.ts pointerMoveStatements), in one batch with the rollout's
 * end. The pointer moves only while the rollout is still running (on `expectStage`) and the
 * candidate can still run; false when nothing moved.
 */
export async function completeRollout(deps: TransitionDeps, row: RolloutRow, opts: TransitionOpts): Promise<boolean> {
  const { db, now } = deps;
  const candidateId = row.candidateDeploymentId;
  const [moved, , , completed] = await db.batch([
    ...pointerMoveStatements(db, {
      userId: row.userId,
      agentId: row.agentId,
      deploymentId: candidateId,
      now,
      qualifies: sql`EXISTS (SELECT 1 FROM ${rollouts} WHERE ${rollouts.id} = ${row.id} AND ${rollouts.status} = 'running'
                ${opts.expectStage === undefined ? sql`` : sql`AND ${rollouts.stageIndex} = ${opts.expectStage}`})
              AND EXISTS (SELECT 1 FROM ${deployments} WHERE ${deployments.id} = ${candidateId}
                AND ${deployments.agentId} = ${row.agentId} AND ${deployments.scriptRemovedAt} IS NULL
                AND ${deployments.status} IN ('ready', 'inactive'))`,
    }),
    db
      .update(rollouts)
      .set(endColumns("completed", opts, now))
      .where(
        and(
          stillRunning(row, opts.expectStage),
          sql`(SELECT ${agents.activeDeploymentId} FROM ${agents} WHERE ${agents.id} = ${row.agentId}) = ${candidateId}`,
          sql`EXISTS (SELECT 1 FROM ${deployments} WHERE ${deployments.id} = ${candidateId} AND ${deployments.status} = 'active')`,
        ),
      )
      .returning(),
  ]);
  // Both must have happened: the pointer moved and the rollout ended.
  return settled(deps, row, moved.length === 0 ? undefined : completed[0], "completed", opts.reason);
}

/** Moves a running rollout from stage `row.stageIndex` to the next; its window starts `now`. */
export async function advanceRollout(deps: TransitionDeps, row: RolloutRow, opts: TransitionOpts): Promise<boolean> {
  const { db, now } = deps;
  const [after] = await db
    .update(rollouts)
    .set({
      stageIndex: row.stageIndex + 1,
      stageStartedAt: now,
      updatedAt: now,
      ...evaluated(opts),
    })
    .where(
      and(stillRunning(row, row.stageIndex), sql`${rollouts.stageIndex} + 1 < json_array_length(${rollouts.stages})`),
    )
    .returning();
  return settled(deps, row, after, "advanced", opts.reason);
}

/** Marks a running rollout as just evaluated (it goes to the back of the evaluator's queue). */
export async function touchRollout(db: Db, row: RolloutRow, now: number) {
  await db.update(rollouts).set({ updatedAt: now }).where(stillRunning(row, undefined));
}

/** Records the last evaluation of a stage that neither advanced nor aborted. */
export async function noteEvaluation(db: Db, row: RolloutRow, evaluation: Record<string, unknown>, now: number) {
  await db
    .update(rollouts)
    .set({ lastEvaluation: evaluation, updatedAt: now })
    .where(stillRunning(row, row.stageIndex));
}
