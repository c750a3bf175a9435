// Removing runtime copies of user code that is no longer needed:
// - an agent's scripts when the agent is deleted (a queued job, retried while Cloudflare's
//   answers say a retry can help);
// - retention: per agent, the newest N standby deployments (`inactive`: rollback targets, and
//   `ready`: manual deploys awaiting activation) keep their scripts, older standby ones and failed
//   ones lose them (called from the cron). `ready` counts with `inactive` so that manual deploys
//   never activated cannot pile up scripts without bound; a removed one answers 409 to activate
//   and to a preview, saying why.
// `deployments.script_removed_at` records the removal; a deployment with it set can no longer be
// activated (the activation route's conditional UPDATE must require `script_removed_at IS NULL`).
import { and, eq, isNull, ne, sql } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../../db/client";
import { agents, deployments } from "../../db/schema";
import { backoffSeconds } from "../../lib/backoff";
import { describeError, logInfo, logWarn } from "../../lib/logger";
import type { QueueOutcome } from "../../lib/queue-outcome";
import { RuntimeError, type RuntimeProvider } from "../../runtime/types";

export type CleanupDeps = { db: Db; runtime: RuntimeProvider; now?: () => number };

/** The deploy-jobs queue message sent when an agent is deleted: remove every runtime script of it. */
export const CleanupAgentScriptsJobSchema = z.strictObject({
  type: z.literal("cleanup_agent_scripts"),
  userId: z.string().min(1).max(64),
  agentId: z.string().min(1).max(64),
});
export type CleanupAgentScriptsJob = z.infer<typeof CleanupAgentScriptsJobSchema>;

/** A failed deployment's script is left alone this long, in case an upload was still finishing. */
export const FAILED_SCRIPT_GRACE_MS = 10 * 60_000;
/** Removals per retention run: bounds the Cloudflare API calls one cron invocation makes. */
export const RETENTION_MAX_PER_RUN = 50;

// ---------------------------------------------------------------------------------------------
// Agent deletion

export type CleanupOutcome = { removedRows: number; removedByTag: number | null; skipped?: "agent_not_deleted" };

/**
 * Deletes every runtime script of a deleted agent: through the runtime's removeAgentScripts where
 * it has one (the dispatch namespace finds them by tag, which also catches an upload D1 never
 * recorded), otherwise by the names D1 recorded; then marks the agent's
 * deployments `script_removed_at`. Refuses to touch a live agent. Throws RuntimeError on a
 * runtime failure (its `retryable` says whether to try again).
 */
export async function handleCleanupJob(job: CleanupAgentScriptsJob, deps: CleanupDeps): Promise<CleanupOutcome> {
  const { db, runtime } = deps;
  const now = deps.now?.() ?? Date.now();

  const agent = await db.query.agents.findFirst({
    columns: { id: true, deletedAt: true },
    where: and(eq(agents.id, job.agentId), eq(agents.userId, job.userId)),
  });
  if (agent && agent.deletedAt === null) {
    logWarn("cleanup.skipped_live_agent", { agentId: job.agentId });
    return { removedRows: 0, removedByTag: null, skipped: "agent_not_deleted" };
  }

  let removedByTag: number | null = null;
  if (runtime.removeAgentScripts) {
    removedByTag = await runtime.removeAgentScripts(job.agentId);
  } else {
    const rows = await db
      .select({ scriptName: deployments.scriptName })
      .from(deployments)
      .where(
        and(
          eq(deployments.agentId, job.agentId),
          eq(deployments.userId, job.userId),
          isNull(deployments.scriptRemovedAt),
        ),
      );
    await runtime.remove(rows.map((r) => r.scriptName));
  }

  // A deployment still `deploying` may upload after this; the deploy job removes that script
  // itself once it sees the agent deleted (deploy-job.ts), so its row is not marked here.
  const result = await db
    .update(deployments)
    .set({ scriptRemovedAt: now, updatedAt: now })
    .where(
      and(
        eq(deployments.agentId, job.agentId),
        eq(deployments.userId, job.userId),
        isNull(deployments.scriptRemovedAt),
        ne(deployments.status, "deploying"),
      ),
    );
  return { removedRows: result.meta.changes, removedByTag };
}

/** Seconds before the next delivery of a failed cleanup job: 10 s, 20 s, 40 s … capped at 5 min. */
export function cleanupRetryDelaySeconds(attempts: number): number {
  return backoffSeconds(attempts, { baseSeconds: 10, maxSeconds: 300 });
}

export type CleanupJobOutcome = QueueOutcome<"removed" | "skipped_live_agent" | "failed" | "transient_error"> & {
  removedRows?: number;
  removedByTag?: number | null;
};

/**
 * Runs one queued cleanup job and says how its message ends: ack on success, on a permanent
 * failure and for a live agent; retry with backoff on a retryable failure (after the queue's
 * max_retries the message goes to the dead-letter queue, whose consumer logs and acks it).
 */
export async function processCleanupJob(
  deps: CleanupDeps,
  job: CleanupAgentScriptsJob,
  attempts: number,
): Promise<CleanupJobOutcome> {
  try {
    const done = await handleCleanupJob(job, deps);
    if (done.skipped) return { action: "ack", result: "skipped_live_agent" };
    return { action: "ack", result: "removed", removedRows: done.removedRows, removedByTag: done.removedByTag };
  } catch (err) {
    const retryable = err instanceof RuntimeError ? err.retryable : true; // e.g. a D1 hiccup
    const error = describeError(err);
    if (!retryable) return { action: "ack", result: "failed", error };
    return { action: "retry", result: "transient_error", delaySeconds: cleanupRetryDelaySeconds(attempts), error };
  }
}

// ---------------------------------------------------------------------------------------------
// Retention

export type RetentionReport = {
  removed: string[];
  /** The deployment whose removal failed and stopped the run (the next run tries again). */
  failed?: { deploymentId: string; error: string; retryable: boolean };
};

type Candidate = { id: string; status: "inactive" | "ready" | "failed"; scriptName: string };

/**
 * What one retention run may act on, oldest first (a run cut short by maxPerRun or a failure
 * leaves the newest in place), at most `maxPerRun`. It reads only deployments that still have a
 * script, through deployments_live_script_idx (partial: script_removed_at IS NULL), never every
 * inactive deployment of the table:
 * 1. the agents with more than `keep` standby (inactive or ready) deployments with scripts (a
 *    covering walk of that index's two status ranges, grouped by agent, stopping after `maxPerRun`
 *    such agents);
 * 2. only those agents' standby deployments, ranked by when each was last active (a ready one: when
 *    it was created), beyond `keep`;
 * 3. failed deployments with scripts past the grace period (every one of them is to be removed).
 * `INDEXED BY` pins that index (other indexes lead with status too, and one of them also yields
 * the created_at order, which tempts the planner into walking every failed deployment ever made);
 * SQLite refuses to prepare the statement if the index is ever dropped or unusable for it.
 */
export function retentionCandidatesSql(opts: { keep: number; maxPerRun: number; agentId?: string; now: number }) {
  const agentFilter = opts.agentId ? sql`AND agent_id = ${opts.agentId}` : sql``;
  return sql`
    WITH over_keep AS (
      SELECT agent_id FROM deployments INDEXED BY deployments_live_script_idx
      WHERE status IN ('inactive', 'ready') AND script_removed_at IS NULL ${agentFilter}
      GROUP BY agent_id HAVING COUNT(*) > ${opts.keep}
      LIMIT ${opts.maxPerRun}
    )
    SELECT id, status, scriptName, last_used FROM (
      SELECT id, status, script_name AS scriptName, COALESCE(activated_at, created_at) AS last_used,
        ROW_NUMBER() OVER (
          PARTITION BY agent_id ORDER BY COALESCE(activated_at, created_at) DESC, id DESC
        ) AS rn
      FROM deployments INDEXED BY deployments_live_script_idx
      WHERE status IN ('inactive', 'ready') AND script_removed_at IS NULL AND agent_id IN (SELECT agent_id FROM over_keep)
    ) WHERE rn > ${opts.keep}
    UNION ALL
    SELECT * FROM (
      SELECT id, status, script_name AS scriptName, created_at AS last_used FROM deployments INDEXED BY deployments_live_script_idx
      WHERE status = 'failed' AND script_removed_at IS NULL AND updated_at < ${opts.now - FAILED_SCRIPT_GRACE_MS} ${agentFilter}
      ORDER BY created_at ASC, id ASC
      LIMIT ${opts.maxPerRun}
    )
    ORDER BY last_used ASC, id ASC
    LIMIT ${opts.maxPerRun}
  `;
}

/**
 * Per agent, keeps the scripts of the `keep` most recently active (or created) inactive and ready
 * deployments and removes the scripts of older ones and of failed ones (after a grace period), at most
 * `maxPerRun` per call. Each removal first claims the row (conditional UPDATE of
 * script_removed_at), so a concurrent rollback can never activate a deployment whose script is
 * being deleted; a failed removal releases the claim and ends the run.
 */
export async function enforceRetention(
  deps: CleanupDeps,
  opts: { keep: number; maxPerRun?: number; agentId?: string },
): Promise<RetentionReport> {
  const { db, runtime } = deps;
  const now = deps.now?.() ?? Date.now();
  const maxPerRun = opts.maxPerRun ?? RETENTION_MAX_PER_RUN;
  const candidates = await db.all<Candidate>(
    retentionCandidatesSql({ keep: opts.keep, maxPerRun, agentId: opts.agentId, now }),
  );

  const report: RetentionReport = { removed: [] };
  for (const c of candidates) {
    const claim = await db
      .update(deployments)
      .set({ scriptRemovedAt: now, updatedAt: now })
      .where(
        and(
          eq(deployments.id, c.id),
          eq(deployments.status, c.status),
          isNull(deployments.scriptRemovedAt),
          // The candidate of a running canary rollout serves traffic: its code stays.
          sql`NOT EXISTS (SELECT 1 FROM rollouts WHERE rollouts.status = 'running' AND rollouts.candidate_deployment_id = ${c.id})`,
        ),
      );
    if (claim.meta.changes !== 1) continue; // re-activated, removed or rolled out meanwhile
    try {
      await runtime.remove([c.scriptName]);
      report.removed.push(c.id);
    } catch (err) {
      await db
        .update(deployments)
        .set({ scriptRemovedAt: null })
        .where(and(eq(deployments.id, c.id), eq(deployments.scriptRemovedAt, now)));
      const retryable = err instanceof RuntimeError ? err.retryable : true;
      report.failed = { deploymentId: c.id, error: describeError(err), retryable };
      logWarn("retention.remove_failed", { deploymentId: c.id, retryable, error: describeError(err) });
      break;
    }
  }
  if (report.removed.length) logInfo("retention.scripts_removed", { count: report.removed.length });
  return report;
}
