// Consumers of the deploy-jobs queue and its dead-letter queue: deploy jobs (`{ deploymentId }`)
// and typed jobs (agent script cleanup). One log line per message.
import { createDb } from "../db/client";
import { type Env, getConfig } from "../env";
import { describeError, logError, logInfo, logWarn } from "../lib/logger";
import { createRuntimeProvider } from "../runtime";
import { processCleanupMessage } from "../services/cleanup/cleanup";
import { failDeadLetteredDeployment, processDeployJob, retryDelaySeconds } from "../services/deployments/deploy-job";
import { isDeployJob, QueueJobSchema } from "./messages";

export async function handleDeployBatch(batch: MessageBatch<unknown>, env: Env, ctx: ExecutionContext): Promise<void> {
  let deps: Parameters<typeof processDeployJob>[0];
  try {
    const config = await getConfig(env);
    deps = { db: createDb(env.DB), keyring: config.keyring, runtime: createRuntimeProvider({ env, ctx, config }) };
  } catch (err) {
    // Misconfiguration: nothing can be deployed until an operator fixes it; keep the jobs.
    logError("deploy_batch_config_error", { queue: batch.queue, error: describeError(err) });
    batch.retryAll({ delaySeconds: 30 });
    return;
  }

  await Promise.all(
    batch.messages.map(async (msg) => {
      const parsed = QueueJobSchema.safeParse(msg.body);
      if (!parsed.success) {
        // A body we cannot read will never become readable: drop it (logged), never retry it.
        logWarn("deploy_job_invalid", { queue: batch.queue, messageId: msg.id, attempts: msg.attempts });
        msg.ack();
        return;
      }
      const job = parsed.data;
      if (!isDeployJob(job)) {
        await processCleanupMessage(msg, job, { db: deps.db, runtime: deps.runtime });
        return;
      }
      const { deploymentId } = job;
      const started = Date.now();
      try {
        const outcome = await processDeployJob(deps, job, msg.attempts);
        if (outcome.action === "ack") msg.ack();
        else msg.retry({ delaySeconds: outcome.delaySeconds });
        logInfo("deploy_job", {
          deploymentId,
          messageId: msg.id,
          attempts: msg.attempts,
          result: outcome.result,
          retryInSeconds: outcome.action === "retry" ? outcome.delaySeconds : undefined,
          error: outcome.action === "retry" ? outcome.error : undefined,
          durationMs: Date.now() - started,
        });
      } catch (err) {
        // Failed before the job could record anything (e.g. D1 unavailable): try again later.
        const delaySeconds = retryDelaySeconds(msg.attempts);
        msg.retry({ delaySeconds });
        logError("deploy_job_error", {
          deploymentId,
          messageId: msg.id,
          attempts: msg.attempts,
          retryInSeconds: delaySeconds,
          error: describeError(err),
        });
      }
    }),
  );
}

export async function handleDeadLetterBatch(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const db = createDb(env.DB);
  for (const msg of batch.messages) {
    const parsed = QueueJobSchema.safeParse(msg.body);
    if (!parsed.success) {
      logWarn("dead_letter_invalid", { queue: batch.queue, messageId: msg.id });
      msg.ack();
      continue;
    }
    const job = parsed.data;
    if (!isDeployJob(job)) {
      // A cleanup that kept failing: the scripts stay until an operator (or retention) removes them.
      logError("cleanup_job_dead_lettered", { agentId: job.agentId, messageId: msg.id });
      msg.ack();
      continue;
    }
    try {
      const failed = await failDeadLetteredDeployment(db, job.deploymentId);
      logWarn("deploy_job_dead_lettered", { deploymentId: job.deploymentId, markedFailed: failed });
      msg.ack();
    } catch (err) {
      logError("dead_letter_error", { deploymentId: job.deploymentId, error: describeError(err) });
      msg.retry({ delaySeconds: 30 });
    }
  }
}
