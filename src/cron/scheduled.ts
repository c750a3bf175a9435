// The cron handler: runs each periodic task in turn, isolated from the others' failures, and
// writes one log line per task. Tasks: re-encryption of secrets after a key rotation.
import type { Env } from "../env";
import { describeError, logError, logInfo, logWarn } from "../lib/logger";
import { reencryptStaleSecrets } from "../services/secrets/reencrypt";

/** Rows per column per batch, and batches per column per run (cron every 5 minutes). */
export const REENCRYPT_BATCH_SIZE = 50;
export const REENCRYPT_MAX_BATCHES = 10;

async function reencryptTask(env: Env): Promise<void> {
  const report = await reencryptStaleSecrets(env, {
    batchSize: REENCRYPT_BATCH_SIZE,
    maxBatches: REENCRYPT_MAX_BATCHES,
  });
  if (report.skipped) return;
  const totals = { scanned: 0, reencrypted: 0, conflicts: 0, failed: 0 };
  for (const c of Object.values(report.columns)) {
    totals.scanned += c.scanned;
    totals.reencrypted += c.reencrypted;
    totals.conflicts += c.conflicts;
    totals.failed += c.failed;
  }
  logInfo("secrets_reencrypt", { currentKeyId: report.currentKeyId, ...totals, complete: report.complete });
  for (const f of report.failures) logWarn("secret_reencrypt_failed", f);
}

const TASKS: { name: string; run: (env: Env) => Promise<void> }[] = [{ name: "secrets_reencrypt", run: reencryptTask }];

/** Runs every task even if one fails; then fails the run (visible as a failed cron) if any did. */
export async function runScheduled(controller: ScheduledController, env: Env, _ctx: ExecutionContext): Promise<void> {
  const failed: string[] = [];
  for (const task of TASKS) {
    try {
      await task.run(env);
    } catch (err) {
      failed.push(task.name);
      logError("cron_task_failed", { task: task.name, cron: controller.cron, error: describeError(err) });
    }
  }
  if (failed.length > 0) throw new Error(`cron tasks failed: ${failed.join(", ")}`);
}
