// Canary rollouts: a candidate deployment of an agent takes a growing share of its traffic, stage
// by stage, while the gateway's own measurements (metrics_events) stay within `abortOn`.
// At most one `running` rollout per agent (partial unique index): the routing query joins it, and
// a second POST fails on the index instead of racing a read.
import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { agents } from "./agents";
import { createdAt, updatedAt } from "./columns";
import { deployments } from "./deployments";
import { users } from "./users";

export const ROLLOUT_STATUSES = ["running", "completed", "aborted"] as const;
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];

export type RolloutStage = { percent: number; minDurationSeconds: number };
export type RolloutAbortOn = { maxErrorRatePct?: number; maxP95Ms?: number; minRequests: number };

export const rollouts = sqliteTable(
  "rollouts",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    agentId: text("agent_id")
      .notNull()
      .references(() => agents.id, { onDelete: "cascade" }),
    candidateDeploymentId: text("candidate_deployment_id")
      .notNull()
      .references(() => deployments.id),
    // The deployment that was active when the rollout began: it serves the rest of the traffic.
    baselineDeploymentId: text("baseline_deployment_id")
      .notNull()
      .references(() => deployments.id),
    status: text("status", { enum: ROLLOUT_STATUSES }).notNull(),
    stages: text("stages", { mode: "json" }).$type<RolloutStage[]>().notNull(),
    abortOn: text("abort_on", { mode: "json" }).$type<RolloutAbortOn>().notNull(),
    // 0-based index into stages, and when that stage began (its measurement window starts there).
    stageIndex: integer("stage_index").notNull().default(0),
    stageStartedAt: integer("stage_started_at").notNull(),
    // Why it ended (aborted: the breach or "aborted by the user"; completed: promoted or last stage).
    endReason: text("end_reason"),
    endedAt: integer("ended_at"),
    // The last evaluation's measurements (candidate and baseline in the stage window), JSON.
    lastEvaluation: text("last_evaluation", { mode: "json" }).$type<Record<string, unknown>>(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex("rollouts_one_running_per_agent_uq").on(t.agentId).where(sql`status = 'running'`),
    // The evaluator's queue: running rollouts only, least recently evaluated first (each
    // evaluation touches updated_at, so a run capped at its maximum still reaches every rollout).
    index("rollouts_running_updated_idx").on(t.updatedAt).where(sql`status = 'running'`),
    index("rollouts_agent_created_idx").on(t.agentId, t.createdAt),
  ],
);

export type RolloutRow = typeof rollouts.$inferSelect;
