// `deployment.active`, `deployment.ready` and `deployment.failed`: announced by whatever moved the
// deployment (the deploy job, an activation or rollback, the dead-letter and stuck sweeps), from
// the row as it now is, after the change committed.
import { eq } from "drizzle-orm";
import { deployments } from "../../db/schema";
import { describeError, logError } from "../../lib/logger";
import { deploymentEventData, deploymentEventType } from "./events";
import { type PublishDeps, publishEvent } from "./publish";

/**
 * Publishes the event the deployment's current status announces (none for `deploying` or
 * `inactive`). Without a queue (callers that run no webhooks) it does nothing; it never throws.
 */
export async function announceDeployment(
  deps: { db: PublishDeps["db"]; webhookQueue?: PublishDeps["webhookQueue"] },
  deploymentId: string,
): Promise<void> {
  const { webhookQueue } = deps;
  if (!webhookQueue) return;
  try {
    const row = await deps.db.query.deployments.findFirst({ where: eq(deployments.id, deploymentId) });
    const type = row ? deploymentEventType(row.status) : undefined;
    if (!row || !type) return;
    await publishEvent({ db: deps.db, webhookQueue }, { userId: row.userId, type, data: deploymentEventData(row) });
  } catch (err) {
    logError("webhook_announce_failed", { deploymentId, error: describeError(err) });
  }
}
