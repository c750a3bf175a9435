// Waiting for the real usage-queue consumer (src/queues/index.ts) in the Workers pool: telemetry
// and the gateway's measurements are stored by it, seconds after the request was answered.
import { env } from "cloudflare:workers";
import { and, eq, sql } from "drizzle-orm";
import { createDb } from "../../src/db/client";
import { metricsEvents } from "../../src/db/schema";
import { newId } from "../../src/lib/ids";
import { gatewayEvent } from "./metrics-events";
import { waitFor } from "./wait";

/**
 * Resolves once everything sent to the usage queue before this call has been consumed: sends a
 * marker (a gateway measurement of a user no test knows) and waits until the consumer stored it.
 * The local queue delivers in the order sent, so a refusal checked after this ("nothing stored")
 * cannot pass merely because the consumer had not run yet.
 */
export async function drainUsageQueue(): Promise<void> {
  const marker = gatewayEvent(newId("user"), newId("agent"), { deploymentId: "dep_queue_marker" });
  await env.USAGE_QUEUE.send(marker);
  await waitFor(
    async () =>
      (await env.DB.prepare("SELECT 1 AS x FROM metrics_events WHERE id = ?").bind(marker.id).first())
        ? true
        : undefined,
    { timeoutMs: 15_000, intervalMs: 50, what: "the usage queue to deliver its marker" },
  );
}

/** Telemetry stored for the deployment, once everything queued so far has been consumed. */
export async function storedTelemetryCount(deploymentId: string): Promise<number> {
  await drainUsageQueue();
  const [row] = await createDb(env.DB)
    .select({ n: sql<number>`count(*)` })
    .from(metricsEvents)
    .where(and(eq(metricsEvents.deploymentId, deploymentId), eq(metricsEvents.source, "telemetry")));
  return Number(row?.n ?? 0);
}
