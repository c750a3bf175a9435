// The ARTIFACTS bucket (R2): each bundle is one object named by the sha256 of its canonical JSON,
// written once however often (and by whomever) it is deployed. D1's deployment_artifacts rows
// hold the metadata and the key; this module is the only one that reads or writes the objects.
import { ApiError } from "../../lib/errors";
import { describeError, logError } from "../../lib/logger";
import { RuntimeError } from "../../runtime/types";
import { artifactObjectKey, type CheckedBundle, parseStoredBundle } from "./bundle-format";

/** What this module needs of an R2 bucket binding (`R2Bucket` satisfies it). */
export type ArtifactBucket = Pick<R2Bucket, "head" | "put" | "get" | "delete">;

/** Stores the bundle unless an object with its address exists; returns the object key. */
export async function storeBundle(bucket: ArtifactBucket, bundle: CheckedBundle): Promise<string> {
  const key = artifactObjectKey(bundle.sha256);
  try {
    if (await bucket.head(key)) return key;
    await bucket.put(key, bundle.json, {
      httpMetadata: { contentType: "application/json" },
      customMetadata: { sha256: bundle.sha256, format: "1" },
    });
    return key;
  } catch (err) {
    logError("artifact_store_failed", { key, error: describeError(err) });
    throw new ApiError("service_unavailable", "the artifact store is unavailable; nothing was deployed, deploy again", {
      headers: { "retry-after": "5" },
    });
  }
}

/**
 * Reads a bundle back. A missing object (R2 and D1 disagree) is a permanent failure with a message
 * that says what to do, so the deployment ends `failed` instead of being retried forever.
 */
export async function readBundle(bucket: ArtifactBucket | undefined, key: string) {
  if (!bucket) {
    throw new RuntimeError("unavailable", "the ARTIFACTS (R2) binding is not configured", false, {
      fault: "configuration",
    });
  }
  const object = await bucket.get(key);
  if (!object) {
    throw new RuntimeError(
      "load_failed",
      `the deployment's bundle (${key}) is missing from the artifact store; deploy the code again`,
      false,
    );
  }
  return parseStoredBundle(await object.text());
}
