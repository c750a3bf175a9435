// The deploy job, as the queue consumer runs it: claim, provider.deploy, then one batch that makes
// the deployment active and moves the agent's pointer (or leaves it inactive when a newer
// deployment of the agent is already active); a `manual` deployment instead ends `ready`, the
// pointer untouched, until it is activated. Also the dead-letter and cron paths that end a
// deployment `failed` so none stays `deploying` forever.
//
// The claim is `claimed_at`, set by a conditional UPDATE; its value is the claim's token. A holder
// that hits a transient error releases its claim before asking the queue to retry, so its retry
// can claim again; a concurrent duplicate delivery finds a live claim and comes back after the
// lease, by which time the deployment is normally finished and the duplicate is acked unchanged.
// Every write after the claim is conditioned on the token, so a holder whose lease lapsed (and was
// taken over) cannot change anything.
import { and, eq, isNull, lt, lte, ne, or, sql } from "drizzle-orm";
import { z } from "zod";
import { DecryptionError } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { agents, deployments } from "../../db/schema";
import { backoffSeconds } from "../../lib/backoff";
import { ConfigError } from "../../lib/config-error";
import { describeError, logError, logWarn } from "../../lib/logger";
import type { QueueOutcome } from "../../lib/queue-outcome";
import { RuntimeError, type RuntimeFault, type RuntimeProvider } from "../../runtime/types";
import { forgetAgentRoute } from "../invoke/route-cache";
import type { TierLimitsByTier } from "../usage/tiers";
import { announceDeployment } from "../webhooks/deployment-events";
import type { WebhookQueue } from "../webhooks/queue";
import type { ArtifactBucket } from "./artifacts";
import { loadDeploymentBundle } from "./bundle";
import { parseSmokeTest, runSmokeTest } from "./smoke-test";

/** How long a claim protects a deployment from other deliveries of its job. */
export const CLAIM_LEASE_MS = 60_000;
/** Deliveries of one job: `max_retries` (4) + 1 in wrangler.toml's deploy-jobs consumer. */
export const DEPLOY_MAX_ATTEMPTS = 5;
/** A deployment still `deploying` this long after creation is failed by the cron sweep. */
export const STUCK_DEPLOYMENT_MS = 10 * 60_000;

/** The deploy-jobs queue message of a deploy: a plain `{ deploymentId }` (the original body). */
export const DeployJobSchema = z.strictObject({ deploymentId: z.string().min(1).max(64) });
export type DeployJob = z.infer<typeof DeployJobSchema>;

export type DeployJobDeps = {
  db: Db;
  keyring: Keyring;
  runtime: RuntimeProvider;
  artifacts?: ArtifactBucket;
  /** The tiers' limits a smoke test runs with (defaults when not given). */
  tierLimits?: TierLimitsByTier;
  /** Where deployment.* webhooks are queued; without it none are sent. */
  webhookQueue?: WebhookQueue;
};

export type DeployJobOutcome = QueueOutcome<
  | "active"
  | "ready"
  | "inactive"
  | "failed"
  | "already_finished"
  | "not_found"
  | "claim_lost"
  | "transient_error"
  | "claimed_elsewhere"
>;

/** Backoff for the n-th delivery (1-based): 2, 4, 8, 16 … seconds, capped at a minute. */
export function retryDelaySeconds(attempts: number): number {
  return backoffSeconds(attempts, { baseSeconds: 2, maxSeconds: 60 });
}

export async function processDeployJob(
  deps: DeployJobDeps,
  job: DeployJob,
  attempts: number,
): Promise<DeployJobOutcome> {
  const { db } = deps;
  const claim = Date.now();
  const [claimed] = await db
    .update(deployments)
    .set({ claimedAt: claim, updatedAt: claim })
    .where(
      and(
        eq(deployments.id, job.deploymentId),
        eq(deployments.status, "deploying"),
        or(isNull(deployments.claimedAt), lte(deployments.claimedAt, claim - CLAIM_LEASE_MS)),
      ),
    )
    .returning();

  if (!claimed) {
    const row = await db.query.deployments.findFirst({
      columns: { status: true, claimedAt: true },
      where: eq(deployments.id, job.deploymentId),
    });
    if (!row) return { action: "ack", result: "not_found" };
    if (row.status !== "deploying") return { action: "ack", result: "already_finished" };
    const leaseLeftMs = (row.claimedAt ?? claim) + CLAIM_LEASE_MS - claim;
    return { action: "retry", result: "claimed_elsewhere", delaySeconds: Math.max(1, Math.ceil(leaseLeftMs / 1000)) };
  }

  try {
    const bundle = await loadDeploymentBundle(deps, claimed);
    await deps.runtime.deploy(bundle);
    // The opt-in smoke test, before the pointer moves: a failure ends the deployment `failed`.
    const smoke = parseSmokeTest(claimed.smokeTest);
    if (smoke) {
      try {
        await runSmokeTest(deps, claimed, bundle, smoke);
      } catch (err) {
        if (!classifyFailure(err).retryable) {
          // Best effort: the runtime copy of a deployment that will never serve goes now.
          await deps.runtime.remove([claimed.scriptName]).catch(() => undefined);
        }
        throw err;
      }
    }
  } catch (err) {
    const { fault, retryable } = classifyFailure(err);
    if (fault !== "configuration" && retryable && attempts < DEPLOY_MAX_ATTEMPTS) {
      await db
        .update(deployments)
        .set({ claimedAt: null, updatedAt: Date.now() })
        .where(and(eq(deployments.id, claimed.id), eq(deployments.claimedAt, claim)));
      return {
        action: "retry",
        result: "transient_error",
        delaySeconds: retryDelaySeconds(attempts),
        error: describeError(err),
      };
    }
    // A misconfiguration fails at once: no retry can help until an operator fixes it.
    const message = tenantMessage(err, fault, claimed.id, retryable ? attempts : null);
    if (fault !== "agent") logPlatformFailure(claimed, fault, err, attempts);
    const failed = await markFailed(db, claimed.id, claim, message);
    if (failed) await announceDeployment(deps, claimed.id);
    return { action: "ack", result: failed ? "failed" : "claim_lost" };
  }

  try {
    const outcome =
      claimed.activation === "manual"
        ? await finalizeReady(db, claimed.id, claim)
        : await finalizeDeployment(db, claimed.id, claimed.agentId, claim);
    // The pointer may have moved: this isolate's invocations route by D1 again (route-cache.ts, rule 2).
    forgetAgentRoute({ userId: claimed.userId, agentId: claimed.agentId });
    if (outcome.result === "inactive" || outcome.result === "ready") await removeIfAgentDeleted(deps, claimed);
    if (outcome.result === "active" || outcome.result === "ready") await announceDeployment(deps, claimed.id);
    return outcome;
  } catch (err) {
    // The batch left nothing behind (it is one transaction); release the claim so the queue's
    // retry can finish the job at once instead of waiting out the lease.
    await db
      .update(deployments)
      .set({ claimedAt: null, updatedAt: Date.now() })
      .where(and(eq(deployments.id, claimed.id), eq(deployments.claimedAt, claim)))
      .catch(() => undefined);
    throw err;
  }
}

/**
 * A deployment that finished after its agent was deleted: the agent's cleanup job may already have
 * run, so this deployment's freshly uploaded script is removed here (best effort; logged).
 */
async function removeIfAgentDeleted(
  deps: DeployJobDeps,
  deployment: { id: string; agentId: string; scriptName: string },
) {
  const agent = await deps.db.query.agents.findFirst({
    columns: { deletedAt: true },
    where: eq(agents.id, deployment.agentId),
  });
  if (!agent || agent.deletedAt === null) return;
  try {
    await deps.runtime.remove([deployment.scriptName]);
    const now = Date.now();
    await deps.db
      .update(deployments)
      .set({ scriptRemovedAt: now, updatedAt: now })
      .where(and(eq(deployments.id, deployment.id), isNull(deployments.scriptRemovedAt)));
  } catch (err) {
    logWarn("deploy_job_orphan_script", { deploymentId: deployment.id, error: describeError(err) });
  }
}

/**
 * One batch: move the agent's pointer to this deployment unless a newer one (ids sort by creation
 * time) is already active, demote the previously active deployment, and set this one `active`
 * or `inactive` according to where the pointer ended. Each statement requires that we still hold
 * the claim, so a finalize after a lost claim changes nothing.
 */
async function finalizeDeployment(db: Db, deploymentId: string, agentId: string, claim: number) {
  const now = Date.now();
  const stillClaimed = sql`EXISTS (SELECT 1 FROM "deployments" AS "d" WHERE "d"."id" = ${deploymentId}
    AND "d"."status" = 'deploying' AND "d"."claimed_at" = ${claim})`;
  const pointerIsThis = sql`(SELECT "a"."active_deployment_id" FROM "agents" AS "a" WHERE "a"."id" = ${agentId}) = ${deploymentId}`;
  const [, , finished] = await db.batch([
    db
      .update(agents)
      .set({ activeDeploymentId: deploymentId, updatedAt: now })
      .where(
        and(
          eq(agents.id, agentId),
          isNull(agents.deletedAt),
          or(isNull(agents.activeDeploymentId), lt(agents.activeDeploymentId, deploymentId)),
          stillClaimed,
        ),
      ),
    db
      .update(deployments)
      .set({ status: "inactive", updatedAt: now })
      .where(
        and(
          eq(deployments.agentId, agentId),
          eq(deployments.status, "active"),
          ne(deployments.id, deploymentId),
          pointerIsThis,
          stillClaimed,
        ),
      ),
    db
      .update(deployments)
      .set({
        status: sql`CASE WHEN ${pointerIsThis} THEN 'active' ELSE 'inactive' END`,
        activatedAt: sql`CASE WHEN ${pointerIsThis} THEN ${now} ELSE "activated_at" END`,
        firstActivatedAt: sql`CASE WHEN ${pointerIsThis} THEN ${now} ELSE "first_activated_at" END`,
        errorMessage: null,
        updatedAt: now,
      })
      .where(
        and(eq(deployments.id, deploymentId), eq(deployments.status, "deploying"), eq(deployments.claimedAt, claim)),
      )
      .returning({ status: deployments.status }),
  ]);
  const status = finished[0]?.status;
  if (status === "active" || status === "inactive") return { action: "ack" as const, result: status };
  return { action: "ack" as const, result: "claim_lost" as const };
}

/**
 * A manual deployment that passed its checks: `ready` (runnable by id, not serving). The pointer
 * is not touched, so the invariant (only `active` is named by it) holds; activate moves it later.
 */
async function finalizeReady(db: Db, deploymentId: string, claim: number) {
  const finished = await db
    .update(deployments)
    .set({ status: "ready", errorMessage: null, updatedAt: Date.now() })
    .where(and(eq(deployments.id, deploymentId), eq(deployments.status, "deploying"), eq(deployments.claimedAt, claim)))
    .returning({ id: deployments.id });
  if (finished.length > 0) return { action: "ack" as const, result: "ready" as const };
  return { action: "ack" as const, result: "claim_lost" as const };
}

/** Whose failure it is (see RuntimeFault) and whether another delivery can help. */
function classifyFailure(err: unknown): { fault: RuntimeFault; retryable: boolean } {
  if (err instanceof RuntimeError) return { fault: err.fault, retryable: err.retryable };
  if (err instanceof ConfigError) return { fault: "configuration", retryable: false };
  if (err instanceof DecryptionError) return { fault: "platform", retryable: false };
  // Anything else (D1 hiccups, network, a missing artifact) may pass; the attempt count bounds it.
  return { fault: "platform", retryable: true };
}

/** The tenant's wording for the platform's failures, with the reference the operator's log line carries. */
export function platformFailureMessage(deploymentId: string): string {
  return `the platform failed to deploy this agent; quote ref ${deploymentId} when reporting it`;
}
export function misconfiguredMessage(deploymentId: string): string {
  return `the platform is misconfigured and cannot deploy agents right now; this is not a fault of your agent (ref ${deploymentId})`;
}

/**
 * What the tenant reads in the deployment's errorMessage: the agent's own failure as it was
 * reported (it is about their code), the platform's as a generic message with a reference.
 */
function tenantMessage(err: unknown, fault: RuntimeFault, deploymentId: string, attempts: number | null): string {
  if (fault === "configuration") return misconfiguredMessage(deploymentId);
  if (fault === "platform") return platformFailureMessage(deploymentId);
  const reason = err instanceof Error ? err.message : String(err);
  return attempts === null ? reason : `deploy failed after ${attempts} attempts: ${reason}`;
}

/** The operator's line for a deployment the platform failed: the detail the tenant does not see. */
function logPlatformFailure(
  deployment: { id: string; userId: string; agentId: string },
  fault: RuntimeFault,
  err: unknown,
  attempts: number,
): void {
  const hint =
    err instanceof DecryptionError
      ? "was SECRETS_ENCRYPTION_KEY changed without keeping the old key in SECRETS_ENCRYPTION_PREVIOUS_KEYS?"
      : undefined;
  logError(fault === "configuration" ? "deploy_platform_misconfigured" : "deploy_platform_failure", {
    deploymentId: deployment.id,
    userId: deployment.userId,
    agentId: deployment.agentId,
    attempts,
    error: describeError(err),
    // drizzle wraps D1's error ("Failed query: …"); what D1 said is its cause.
    cause: err instanceof Error && err.cause !== undefined ? describeError(err.cause) : undefined,
    hint,
  });
}

async function markFailed(db: Db, deploymentId: string, claim: number | null, message: string): Promise<boolean> {
  const failed = await db
    .update(deployments)
    .set({ status: "failed", errorMessage: message, updatedAt: Date.now() })
    .where(
      and(
        eq(deployments.id, deploymentId),
        eq(deployments.status, "deploying"),
        claim === null
          ? or(isNull(deployments.claimedAt), lte(deployments.claimedAt, Date.now() - CLAIM_LEASE_MS))
          : eq(deployments.claimedAt, claim),
      ),
    )
    .returning({ id: deployments.id });
  return failed.length > 0;
}

/**
 * The gateway's configuration is invalid (it cannot even build what a deploy needs): the job's
 * deployment fails at once with the misconfiguration message instead of waiting out the retries.
 * Only an unclaimed `deploying` deployment is changed; the caller logs the detail once per batch.
 */
export async function failMisconfiguredDeployment(db: Db, deploymentId: string): Promise<boolean> {
  return markFailed(db, deploymentId, null, misconfiguredMessage(deploymentId));
}

/** The dead-letter path: the job ran out of deliveries without finishing the deployment. */
export async function failDeadLetteredDeployment(db: Db, deploymentId: string): Promise<boolean> {
  const now = Date.now();
  const rows = await db
    .update(deployments)
    .set({
      status: "failed",
      errorMessage: "the deploy job exhausted its retries without finishing; deploy again",
      updatedAt: now,
    })
    .where(
      and(
        eq(deployments.id, deploymentId),
        eq(deployments.status, "deploying"),
        or(isNull(deployments.claimedAt), lte(deployments.claimedAt, now - CLAIM_LEASE_MS)),
      ),
    )
    .returning({ id: deployments.id });
  return rows.length > 0;
}

/** The cron path: fails deployments left `deploying` (and unclaimed) past STUCK_DEPLOYMENT_MS. */
export async function sweepStuckDeployments(db: Db, now = Date.now()): Promise<string[]> {
  const rows = await db
    .update(deployments)
    .set({
      status: "failed",
      errorMessage: `the deployment did not finish within ${STUCK_DEPLOYMENT_MS / 60_000} minutes; deploy again`,
      updatedAt: now,
    })
    .where(
      and(
        eq(deployments.status, "deploying"),
        lt(deployments.createdAt, now - STUCK_DEPLOYMENT_MS),
        or(isNull(deployments.claimedAt), lte(deployments.claimedAt, now - CLAIM_LEASE_MS)),
      ),
    )
    .returning({ id: deployments.id });
  return rows.map((r) => r.id);
}
