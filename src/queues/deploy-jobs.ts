// The deploy-jobs queue and its dead-letter queue. Two pipelines share the queue: deploys (owned by
// services/deployments/deploy-job.ts) and agent script cleanup (services/cleanup). Each owns its
// message schema, handler and retry policy and returns an outcome; this module only reads the
// message, picks the pipeline, applies the outcome and writes one log line per message.
import { z } from "zod";
import { composeServices } from "../compose";
import { createDb } from "../db/client";
import { type Env, getConfig } from "../env";
import { describeError, type LogFields, logError, logInfo, logWarn } from "../lib/logger";
import { type QueueOutcome, settleMessage } from "../lib/queue-outcome";
import { CleanupAgentScriptsJobSchema, processCleanupJob } from "../services/cleanup/cleanup";
import {
  DeployJobSchema,
  failDeadLetteredDeployment,
  failMisconfiguredDeployment,
  processDeployJob,
  retryDelaySeconds,
} from "../services/deployments/deploy-job";
import { announceDeployment } from "../services/webhooks/deployment-events";

/** Anything the deploy-jobs queue carries: a plain deploy body or a job with a `type`. */
export const DeployQueueMessageSchema = z.union([DeployJobSchema, CleanupAgentScriptsJobSchema]);
export type DeployQueueMessage = z.infer<typeof DeployQueueMessageSchema>;

export async function handleDeployBatch(batch: MessageBatch<unknown>, env: Env, ctx: ExecutionContext): Promise<void> {
  let deps: Parameters<typeof processDeployJob>[0];
  try {
    const services = composeServices(env, ctx, await getConfig(env));
    deps = {
      db: services.db,
      keyring: services.keyring,
      runtime: services.runtime,
      artifacts: services.artifacts,
      tierLimits: services.tierLimits,
      webhookQueue: services.webhookQueue,
    };
  } catch (err) {
    // Misconfiguration: nothing can be deployed until an operator fixes it. The deploys fail at
    // once (the tenant reads "the platform is misconfigured"; the detail is in this line); the
    // cleanup jobs are kept, since they change nothing a tenant sees and can run once it is fixed.
    logError("deploy_batch_config_error", { queue: batch.queue, error: describeError(err) });
    await failBatchMisconfigured(batch, env);
    return;
  }

  await Promise.all(
    batch.messages.map(async (msg) => {
      const parsed = DeployQueueMessageSchema.safeParse(msg.body);
      if (!parsed.success) {
        // A body we cannot read will never become readable: drop it (logged), never retry it.
        logWarn("deploy_job_invalid", { queue: batch.queue, messageId: msg.id, attempts: msg.attempts });
        msg.ack();
        return;
      }
      const job = parsed.data;
      const started = Date.now();
      const fields = { messageId: msg.id, attempts: msg.attempts };
      if ("type" in job) {
        const outcome = await processCleanupJob(deps, job, msg.attempts);
        settleMessage(msg, outcome);
        const { action: _, ...details } = outcome;
        logOutcome("cleanup_job", outcome, {
          agentId: job.agentId,
          ...fields,
          ...details,
          durationMs: Date.now() - started,
        });
        return;
      }
      let outcome: QueueOutcome;
      try {
        outcome = await processDeployJob(deps, job, msg.attempts);
      } catch (err) {
        // Failed before the job could record anything (e.g. D1 unavailable): try again later.
        outcome = {
          action: "retry",
          result: "error",
          delaySeconds: retryDelaySeconds(msg.attempts),
          error: describeError(err),
        };
      }
      settleMessage(msg, outcome);
      logOutcome("deploy_job", outcome, {
        deploymentId: job.deploymentId,
        ...fields,
        result: outcome.result,
        retryInSeconds: outcome.action === "retry" ? outcome.delaySeconds : undefined,
        error: outcome.error,
        durationMs: Date.now() - started,
      });
    }),
  );
}

async function failBatchMisconfigured(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const db = createDb(env.DB);
  for (const msg of batch.messages) {
    const parsed = DeployQueueMessageSchema.safeParse(msg.body);
    if (!parsed.success || "type" in parsed.data) {
      msg.retry({ delaySeconds: 30 });
      continue;
    }
    const { deploymentId } = parsed.data;
    try {
      const failed = await failMisconfiguredDeployment(db, deploymentId);
      logError("deploy_platform_misconfigured", { deploymentId, messageId: msg.id, markedFailed: failed });
      if (failed) await announceDeployment({ db, webhookQueue: env.WEBHOOK_QUEUE }, deploymentId);
      msg.ack();
    } catch (err) {
      logError("deploy_job", { deploymentId, messageId: msg.id, error: describeError(err) });
      msg.retry({ delaySeconds: 30 });
    }
  }
}

/** Retries are warnings, a permanent failure is an error, the rest is information. */
function logOutcome(event: string, outcome: QueueOutcome, fields: LogFields): void {
  if (outcome.action === "retry") logWarn(event, fields);
  else if (outcome.error !== undefined) logError(event, fields);
  else logInfo(event, fields);
}

export async function handleDeadLetterBatch(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const db = createDb(env.DB);
  for (const msg of batch.messages) {
    const parsed = DeployQueueMessageSchema.safeParse(msg.body);
    if (!parsed.success) {
      logWarn("dead_letter_invalid", { queue: batch.queue, messageId: msg.id });
      msg.ack();
      continue;
    }
    const job = parsed.data;
    if ("type" in job) {
      // A cleanup that kept failing: the scripts stay until an operator (or retention) removes them.
      logError("cleanup_job_dead_lettered", { agentId: job.agentId, messageId: msg.id });
      msg.ack();
      continue;
    }
    try {
      const failed = await failDeadLetteredDeployment(db, job.deploymentId);
      logWarn("deploy_job_dead_lettered", { deploymentId: job.deploymentId, markedFailed: failed });
      if (failed) await announceDeployment({ db, webhookQueue: env.WEBHOOK_QUEUE }, job.deploymentId);
      msg.ack();
    } catch (err) {
      logError("dead_letter_error", { deploymentId: job.deploymentId, error: describeError(err) });
      msg.retry({ delaySeconds: 30 });
    }
  }
}
