// Assembles a DeploymentBundle (code + decrypted secrets) for the runtime. The plaintext lives
// only in memory for the duration of a deploy or a cold invoke; it is never logged or stored.
import { and, eq } from "drizzle-orm";
import { secretsSnapshotAad, telemetrySecretAad } from "../../crypto/aad";
import { toBase64Url } from "../../crypto/encoding";
import { decryptSecret, decryptSecretText } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import type { DeploymentRow } from "../../db/schema";
import { deploymentArtifacts } from "../../db/schema";
import type { DeploymentBundle, RuntimeModule, RuntimeProviderName } from "../../runtime/types";
import { type ArtifactBucket, readBundle } from "./artifacts";

export async function loadDeploymentBundle(
  deps: { db: Db; keyring: Keyring; artifacts?: ArtifactBucket },
  row: DeploymentRow,
): Promise<DeploymentBundle> {
  const artifact = await deps.db.query.deploymentArtifacts.findFirst({
    columns: { moduleCode: true, storage: true, objectKey: true, purgedAt: true },
    where: and(eq(deploymentArtifacts.id, row.artifactId), eq(deploymentArtifacts.userId, row.userId)),
  });
  if (!artifact) throw new Error(`artifact ${row.artifactId} of deployment ${row.id} is missing`);
  if (artifact.purgedAt !== null) throw new Error(`artifact ${row.artifactId} of deployment ${row.id} was purged`);
  // Both storages are read: artifacts made before bundles hold one ES module in D1.
  let modules: RuntimeModule[];
  let compatibilityFlags: string[] = [];
  if (artifact.storage === "r2" && artifact.objectKey) {
    const stored = await readBundle(deps.artifacts, artifact.objectKey);
    modules = stored.runtimeModules;
    compatibilityFlags = stored.compatibilityFlags;
  } else {
    modules = [{ name: row.mainModuleName, type: "esm", content: artifact.moduleCode }];
  }
  const telemetryKey = await decryptSecret(deps.keyring, row.telemetrySecretCiphertext, telemetrySecretAad(row.id));
  const secrets = row.secretsSnapshotCiphertext
    ? (JSON.parse(
        await decryptSecretText(deps.keyring, row.secretsSnapshotCiphertext, secretsSnapshotAad(row.id)),
      ) as Record<string, string>)
    : {};
  return {
    deploymentId: row.id,
    userId: row.userId,
    agentId: row.agentId,
    scriptName: row.scriptName,
    runtimeProvider: row.runtimeProvider as RuntimeProviderName,
    mainModuleName: row.mainModuleName,
    modules,
    compatibilityDate: row.compatibilityDate,
    compatibilityFlags,
    telemetrySecret: toBase64Url(telemetryKey),
    secrets,
  };
}
