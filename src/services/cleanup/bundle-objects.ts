// Removal of purged bundles from the ARTIFACTS bucket (R2), run by the cron after the purge of
// deleted agents (./purge.ts), which empties an artifact in D1 once no deployment of a live agent
// uses it. The object goes only after D1 says so: a failure leaves an object nobody names, never
// a deployment without its code.
//
// Objects are named by the content's sha256 (services/deployments/artifacts.ts), so two users who
// deploy the same bytes share one object: an object is removed only when no live (unpurged)
// artifact of anyone names it. A deploy of the same bytes can race the removal (it found the object
// and is about to write its artifact row): the bytes are read before the delete, D1 is asked again
// after it, and the object is put back if a live artifact appeared in between; and the deploy
// checks for the object again once its row is written (services/deployments/create.ts), which
// covers the other order. The object is missing only between a delete and its put-back.
//
// Bounded per run: at most `maxObjects` artifacts, oldest purge first, on the partial index
// deployment_artifacts_object_due_idx; the rest on the next run.
import { and, asc, eq, isNotNull, isNull, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { deploymentArtifacts } from "../../db/schema";
import { pauseBetweenSteps } from "../../lib/pause";
import type { ArtifactBucket } from "../deployments/artifacts";

/** Artifacts whose object is considered per cron run. */
export const BUNDLE_OBJECTS_PER_RUN = 20;

export type BundleObjectsReport = {
  /** Objects deleted from the bucket. */
  removed: number;
  /** Purged artifacts whose object another live artifact still names (left in place). */
  shared: number;
  /** Objects put back because a deploy of the same bytes came in during the removal. */
  restored: number;
  /** More due artifacts may be left for the next run. */
  complete: boolean;
};

export async function removePurgedBundles(
  deps: { db: Db; artifacts: ArtifactBucket | undefined },
  opts: { maxObjects?: number; now?: number } = {},
): Promise<BundleObjectsReport> {
  const report: BundleObjectsReport = { removed: 0, shared: 0, restored: 0, complete: true };
  const { db, artifacts } = deps;
  if (!artifacts) return report;
  const maxObjects = opts.maxObjects ?? BUNDLE_OBJECTS_PER_RUN;
  const due = await db
    .select({ id: deploymentArtifacts.id, objectKey: deploymentArtifacts.objectKey })
    .from(deploymentArtifacts)
    .where(
      and(
        eq(deploymentArtifacts.storage, "r2"),
        isNotNull(deploymentArtifacts.purgedAt),
        isNull(deploymentArtifacts.objectRemovedAt),
      ),
    )
    .orderBy(asc(deploymentArtifacts.purgedAt))
    .limit(maxObjects + 1);
  report.complete = due.length <= maxObjects;

  const stillNamed = async (key: string) =>
    (await db
      .select({ one: sql<number>`1` })
      .from(deploymentArtifacts)
      .where(and(eq(deploymentArtifacts.objectKey, key), isNull(deploymentArtifacts.purgedAt)))
      .limit(1)
      .get()) !== undefined;

  for (const [i, artifact] of due.slice(0, maxObjects).entries()) {
    if (i > 0) await pauseBetweenSteps();
    const key = artifact.objectKey;
    if (key) {
      if (await stillNamed(key)) {
        report.shared++;
      } else {
        const object = await artifacts.get(key);
        if (object) {
          const bytes = await object.arrayBuffer();
          const { httpMetadata, customMetadata } = object;
          await artifacts.delete(key);
          if (await stillNamed(key)) {
            await artifacts.put(key, bytes, { httpMetadata, customMetadata });
            report.restored++;
          } else {
            report.removed++;
          }
        }
      }
    }
    // Marked only if it is still purged: a deploy that revived the artifact meanwhile keeps it.
    await db
      .update(deploymentArtifacts)
      .set({ objectRemovedAt: opts.now ?? Date.now() })
      .where(and(eq(deploymentArtifacts.id, artifact.id), isNotNull(deploymentArtifacts.purgedAt)));
  }
  return report;
}
