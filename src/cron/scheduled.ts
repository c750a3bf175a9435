// The cron handler (wrangler.toml [triggers]): periodic maintenance. Each task logs one line; a
// failing task does not stop the others, and the run fails (a visible failed cron) if any did.
import { composeServices, type Services } from "../compose";
import { createDb, type Db } from "../db/client";
import { type Env, getConfig } from "../env";
import { describeError, logError, logInfo, logWarn } from "../lib/logger";
import { pauseBetweenSteps } from "../lib/pause";
import { periodBounds, periodKeyOf } from "../lib/time";
import { removePurgedBundles } from "../services/cleanup/bundle-objects";
import { enforceRetention } from "../services/cleanup/cleanup";
import { purgeDeletedAgents } from "../services/cleanup/purge";
import { sweepStuckDeployments } from "../services/deployments/deploy-job";
import { purgeExpiredIdempotencyKeys } from "../services/idempotency/idempotency";
import { reconcileUsage } from "../services/metering/reconcile";
import { expireMetricsEvents } from "../services/metering/retention";
import { evaluateRollouts } from "../services/rollouts/evaluate";
import { reencryptStaleSecrets } from "../services/secrets/reencrypt";
import { expireStatsBuckets } from "../services/stats/retention";
import { purgeOldDeliveries, requeueStalledDeliveries } from "../services/webhooks/deliver";
import { announceDeployment } from "../services/webhooks/deployment-events";

const DAY_MS = 24 * 60 * 60_000;

type TaskResult = Record<string, number | string | undefined>;
/**
 * The db alone needs no configuration, so the tasks that only read and write D1 keep running while
 * a bad setting stops the ones that need the full services (keyring, runtime).
 */
type CronDeps = { db: Db; webhookQueue: Env["WEBHOOK_QUEUE"]; services: () => Promise<Services> };

type Task = {
  name: string;
  /** Runs on the every-minute trigger too (the rest runs on the maintenance trigger only). */
  everyMinute?: boolean;
  run: (deps: CronDeps, scheduledTime: number) => Promise<TaskResult>;
};

/** Secret re-encryption after a key rotation: rows per column per batch, batches per run. */
export const REENCRYPT_BATCH_SIZE = 50;
export const REENCRYPT_MAX_BATCHES = 10;
/** Expired Idempotency-Key records: rows per delete, deletes per run. */
export const IDEMPOTENCY_PURGE_BATCH_SIZE = 500;
export const IDEMPOTENCY_PURGE_MAX_BATCHES = 10;

/** wrangler.toml [triggers]: rollouts are evaluated every minute, maintenance runs every 5. */
export const EVERY_MINUTE_CRON = "* * * * *";

const TASKS: Task[] = [
  {
    // Canary rollouts: abort on a breach, advance a stage whose time has passed, complete after
    // the last (services/rollouts/evaluate.ts). First, so a slow maintenance task never delays it.
    name: "evaluate_rollouts",
    everyMinute: true,
    run: async ({ db, webhookQueue }, scheduledTime) => {
      const r = await evaluateRollouts(db, { now: Math.max(scheduledTime, Date.now()), webhookQueue });
      return { ...r };
    },
  },
  {
    // No deployment stays `deploying` forever (its job was lost or never finished).
    name: "sweep_stuck_deployments",
    run: async ({ db, webhookQueue }, scheduledTime) => {
      const failed = await sweepStuckDeployments(db, Math.max(scheduledTime, Date.now()));
      for (const id of failed) await announceDeployment({ db, webhookQueue }, id);
      return { failed: failed.length };
    },
  },
  {
    // Webhook deliveries whose queue message was lost (services/webhooks/deliver.ts) are queued again.
    name: "requeue_webhook_deliveries",
    run: async ({ db, webhookQueue }, scheduledTime) => {
      const report = await requeueStalledDeliveries({ db, webhookQueue }, { now: Math.max(scheduledTime, Date.now()) });
      return { requeued: report.requeued };
    },
  },
  {
    // Webhook delivery history older than 30 days, 500 rows per delete, at most 10 deletes per run.
    name: "purge_webhook_deliveries",
    run: async ({ db }, scheduledTime) => {
      const report = await purgeOldDeliveries(db, { now: Math.max(scheduledTime, Date.now()) });
      return { deleted: report.deleted, complete: String(report.complete) };
    },
  },
  {
    // Older inactive and ready (and failed) deployments lose their runtime scripts; the newest stay.
    name: "enforce_retention",
    run: async (deps) => {
      const { db, runtime, config } = await deps.services();
      const report = await enforceRetention({ db, runtime }, { keep: config.deploymentRetention });
      return { removed: report.removed.length, failed: report.failed?.deploymentId };
    },
  },
  {
    // billing_usage checked against metrics_events incrementally: the events since the last run
    // (bounded), then a bounded slice of the counters (services/metering/reconcile.ts).
    name: "reconcile_usage",
    run: async ({ db }, scheduledTime) => {
      const r = await reconcileUsage(db, { now: Math.max(scheduledTime, Date.now()) });
      return {
        events: r.events,
        corrected: r.corrected,
        caughtUp: String(r.caughtUp),
        dirtyLeft: r.dirtyLeft,
        sweptToEnd: String(r.sweptToEnd),
      };
    },
  },
  {
    // Idempotency-Key records older than 24 h, in bounded batches (the rest on the next run).
    name: "purge_idempotency_keys",
    run: async ({ db }, scheduledTime) => {
      const report = await purgeExpiredIdempotencyKeys(db, {
        batchSize: IDEMPOTENCY_PURGE_BATCH_SIZE,
        maxBatches: IDEMPOTENCY_PURGE_MAX_BATCHES,
        now: Math.max(scheduledTime, Date.now()),
      });
      return { deleted: report.deleted, complete: String(report.complete) };
    },
  },
  {
    // metrics_events older than the user's tier keeps them (metricsRetentionDays) are deleted, in
    // bounded batches; billing_usage stays. Never the events of a period reconcile_usage still
    // recomputes (the previous month during its first day, else the current one).
    name: "expire_metrics_events",
    run: async (deps, scheduledTime) => {
      const { db, config } = await deps.services();
      const now = Math.max(scheduledTime, Date.now());
      const keepFrom = periodBounds(periodKeyOf(now - DAY_MS)).start;
      const report = await expireMetricsEvents(db, { tierLimits: config.tierLimits, now, keepFrom });
      return { deleted: report.deleted, statements: report.statements, complete: String(report.complete) };
    },
  },
  {
    // Per-agent stats buckets past the longest window that reads them (minute buckets after 2 h,
    // hour buckets after 8 days), in bounded batches.
    name: "expire_stats_buckets",
    run: async ({ db }, scheduledTime) => {
      const report = await expireStatsBuckets(db, { now: Math.max(scheduledTime, Date.now()) });
      return { deleted: report.deleted, statements: report.statements, complete: String(report.complete) };
    },
  },
  {
    // Deleted agents past DELETED_AGENT_GRACE_MS lose their encrypted secrets, their deployments'
    // secrets snapshots and the code no other deployment uses (bounded per run; see purge.ts).
    name: "purge_deleted_agents",
    run: async ({ db }, scheduledTime) => {
      const report = await purgeDeletedAgents(db, { now: Math.max(scheduledTime, Date.now()) });
      return {
        agents: report.agents,
        secrets: report.secrets,
        snapshots: report.snapshots,
        artifacts: report.artifacts.length,
        statements: report.statements,
        complete: String(report.complete),
      };
    },
  },
  {
    // The bundles of purged artifacts leave the ARTIFACTS bucket once no live artifact names them
    // (bounded per run; see bundle-objects.ts).
    name: "remove_purged_bundles",
    run: async (deps, scheduledTime) => {
      const { db, artifacts } = await deps.services();
      const report = await removePurgedBundles({ db, artifacts }, { now: Math.max(scheduledTime, Date.now()) });
      return { ...report, complete: String(report.complete) };
    },
  },
  {
    // Secrets still sealed under a previous SECRETS_ENCRYPTION_KEY are re-sealed under the current one.
    name: "secrets_reencrypt",
    run: async (deps) => {
      const { db, keyring } = await deps.services();
      const report = await reencryptStaleSecrets(
        { db, keyring },
        {
          batchSize: REENCRYPT_BATCH_SIZE,
          maxBatches: REENCRYPT_MAX_BATCHES,
        },
      );
      if (report.skipped) return { skipped: "no previous keys" };
      const totals = { scanned: 0, reencrypted: 0, conflicts: 0, failed: 0 };
      for (const c of Object.values(report.columns)) {
        totals.scanned += c.scanned;
        totals.reencrypted += c.reencrypted;
        totals.conflicts += c.conflicts;
        totals.failed += c.failed;
      }
      for (const f of report.failures) logWarn("secret_reencrypt_failed", f);
      return { currentKeyId: report.currentKeyId, ...totals, complete: String(report.complete) };
    },
  },
];

export async function handleScheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext) {
  let services: Promise<Services> | undefined;
  const deps: CronDeps = {
    db: createDb(env.DB),
    webhookQueue: env.WEBHOOK_QUEUE,
    services: () => {
      services ??= getConfig(env).then((config) => composeServices(env, ctx, config));
      return services;
    },
  };
  const failed: string[] = [];
  const minuteOnly = controller.cron === EVERY_MINUTE_CRON;
  let ran = 0;
  for (const task of TASKS) {
    if (minuteOnly && !task.everyMinute) continue;
    if (ran++ > 0) await pauseBetweenSteps();
    try {
      logInfo("cron_task", {
        task: task.name,
        cron: controller.cron,
        ...(await task.run(deps, controller.scheduledTime)),
      });
    } catch (err) {
      failed.push(task.name);
      logError("cron_task_failed", { task: task.name, error: describeError(err) });
    }
  }
  if (failed.length > 0) throw new Error(`cron tasks failed: ${failed.join(", ")}`);
}
