// The purge of deleted agents' secret material and code, run by the cron. Deleting an agent
// tombstones it (agents.deleted_at) and keeps its rows; DELETED_AGENT_GRACE_MS later this removes:
// - its agent_secrets rows (the encrypted secrets);
// - its deployments' secrets snapshots (deployments.secrets_snapshot_ciphertext: only needed to
//   run a deployment, and a deleted agent's deployments are never run again);
// - the code of the artifacts its deployments used, once no deployment of an unpurged agent
//   references them (artifacts are shared per user by content, so another agent of the same user
//   may still run the same bytes). The artifact row stays, emptied, because the tombstoned
//   deployments still name it; deploying the same bytes again restores its code.
// The agent and deployment rows themselves stay (usage and audit history refer to them); the
// agent is marked `purged_at` last, so each agent is purged once and purged tombstones leave the
// purge's index.
//
// Bounded per run: agents are taken PURGE_AGENTS_PER_BATCH at a time, every statement changes at
// most PURGE_ROWS_PER_STATEMENT rows, and a run issues at most PURGE_MAX_STATEMENTS statements;
// what is left is taken up by the next run (every step is idempotent).
import { and, asc, inArray, isNotNull, isNull, lte, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { agentEgressPolicies, agentSecrets, agents, deploymentArtifacts, deployments } from "../../db/schema";
import { pauseBetweenSteps } from "../../lib/pause";

/**
 * How long a deleted agent's secrets and code are kept. Undelete is not offered, so this is not a
 * recovery window: it is for the work a deletion leaves in flight. A deploy job of the agent that
 * was queued before the deletion still reads the deployment's snapshot and artifact (queue
 * retries and the stuck-deployment sweep end within an hour), and the agent's script cleanup job
 * is retried for a while. A week is far beyond both, and short enough that deleted secrets do not
 * linger.
 */
export const DELETED_AGENT_GRACE_MS = 7 * 24 * 60 * 60_000;
/** Deleted agents purged together (one candidate query, one marking transaction). */
export const PURGE_AGENTS_PER_BATCH = 25;
/** Rows one DELETE or UPDATE changes at most. */
export const PURGE_ROWS_PER_STATEMENT = 500;
/** D1 statements one cron run issues at most. */
export const PURGE_MAX_STATEMENTS = 40;

export type PurgeOptions = {
  now?: number;
  graceMs?: number;
  agentsPerBatch?: number;
  rowsPerStatement?: number;
  maxStatements?: number;
};

export type PurgeReport = {
  agents: number;
  secrets: number;
  snapshots: number;
  /** Artifact ids whose code was purged (their R2 objects go in ./bundle-objects.ts). */
  artifacts: string[];
  statements: number;
  /** False when the statement budget ran out with due agents possibly left. */
  complete: boolean;
};

export async function purgeDeletedAgents(db: Db, opts: PurgeOptions = {}): Promise<PurgeReport> {
  const now = opts.now ?? Date.now();
  const cutoff = now - (opts.graceMs ?? DELETED_AGENT_GRACE_MS);
  const agentsPerBatch = opts.agentsPerBatch ?? PURGE_AGENTS_PER_BATCH;
  const rows = opts.rowsPerStatement ?? PURGE_ROWS_PER_STATEMENT;
  const maxStatements = opts.maxStatements ?? PURGE_MAX_STATEMENTS;
  const report: PurgeReport = { agents: 0, secrets: 0, snapshots: 0, artifacts: [], statements: 0, complete: false };
  const budgetLeft = () => maxStatements - report.statements;

  // Each batch needs at least: the candidate query, one secrets delete, one snapshot update, one
  // artifact update and the marking.
  while (budgetLeft() >= 5) {
    if (report.statements > 0) await pauseBetweenSteps();
    report.statements++;
    const due = await db
      .select({ id: agents.id })
      .from(agents)
      .where(and(isNotNull(agents.deletedAt), isNull(agents.purgedAt), lte(agents.deletedAt, cutoff)))
      .orderBy(asc(agents.deletedAt))
      .limit(agentsPerBatch);
    if (due.length === 0) {
      report.complete = true;
      return report;
    }
    const ids = due.map((a) => a.id);

    // 1. The encrypted secrets, by the (agent_id, name) index.
    for (;;) {
      if (budgetLeft() < 3) return report;
      report.statements++;
      const deleted = await db
        .delete(agentSecrets)
        .where(
          inArray(
            agentSecrets.id,
            db.select({ id: agentSecrets.id }).from(agentSecrets).where(inArray(agentSecrets.agentId, ids)).limit(rows),
          ),
        )
        .returning({ id: agentSecrets.id });
      report.secrets += deleted.length;
      if (deleted.length < rows) break;
    }

    // 2. The deployments' secrets snapshots, by the (agent_id, created_at) index.
    for (;;) {
      if (budgetLeft() < 2) return report;
      report.statements++;
      const nulled = await db
        .update(deployments)
        .set({ secretsSnapshotCiphertext: null })
        .where(
          inArray(
            deployments.id,
            db
              .select({ id: deployments.id })
              .from(deployments)
              .where(and(inArray(deployments.agentId, ids), isNotNull(deployments.secretsSnapshotCiphertext)))
              .limit(rows),
          ),
        )
        .returning({ id: deployments.id });
      report.snapshots += nulled.length;
      if (nulled.length < rows) break;
    }

    // 3. The code of the artifacts these deployments used that no other deployment still needs
    //    (none of an agent outside this batch that is not purged), found by deployments_artifact_idx.
    //    A concurrent deploy of the same bytes either commits first (its deployment keeps the
    //    artifact) or after (its insert restores the code).
    for (;;) {
      if (budgetLeft() < 2) return report;
      report.statements++;
      const idList = sql.join(
        ids.map((id) => sql`${id}`),
        sql`, `,
      );
      const purged = await db
        .update(deploymentArtifacts)
        .set({ moduleCode: "", purgedAt: now })
        .where(
          inArray(
            deploymentArtifacts.id,
            sql`(SELECT DISTINCT "d"."artifact_id" FROM ${deployments} AS "d"
              JOIN ${deploymentArtifacts} AS "art" ON "art"."id" = "d"."artifact_id"
              WHERE "d"."agent_id" IN (${idList}) AND "art"."purged_at" IS NULL
                AND NOT EXISTS (SELECT 1 FROM ${deployments} AS "ref" JOIN ${agents} AS "owner" ON "owner"."id" = "ref"."agent_id"
                  WHERE "ref"."artifact_id" = "d"."artifact_id" AND "owner"."purged_at" IS NULL
                    AND "owner"."id" NOT IN (${idList}))
              LIMIT ${rows})`,
          ),
        )
        .returning({ id: deploymentArtifacts.id });
      // Their R2 objects are removed afterwards by the cron's remove_purged_bundles task
      // (bundle-objects.ts), after D1 says they are gone.
      report.artifacts.push(...purged.map((a) => a.id));
      if (purged.length < rows) break;
    }

    // 4. Done with these agents: their egress policies (one row each, by primary key) go, and they
    // leave the purge's index, in one batch.
    report.statements++;
    await db.batch([
      db.delete(agentEgressPolicies).where(inArray(agentEgressPolicies.agentId, ids)),
      db
        .update(agents)
        .set({ purgedAt: now })
        .where(and(inArray(agents.id, ids), isNull(agents.purgedAt))),
    ]);
    report.agents += ids.length;
    if (ids.length < agentsPerBatch) {
      report.complete = true;
      return report;
    }
  }
  return report;
}
