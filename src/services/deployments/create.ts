// POST /v1/agents/:agentId/deploy: validates the payload, stores the code as a content-addressed
// artifact, creates the deployment (`deploying`) with a fresh telemetry secret and a snapshot of
// the agent's secrets (both encrypted), and queues the deploy job. The queue consumer does the rest.
import { and, eq, sql } from "drizzle-orm";
import { secretsSnapshotAad, telemetrySecretAad } from "../../crypto/aad";
import { sha256Hex } from "../../crypto/encoding";
import { encryptSecret } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { type DeploymentActivation, type DeploymentRow, deploymentArtifacts, deployments } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { newId } from "../../lib/ids";
import { describeError, logError } from "../../lib/logger";
import { RUNTIME_PROVIDERS, type RuntimeProviderName } from "../../runtime/types";
import { scriptNameFor } from "../../runtime/user-script";
import { getAgent } from "../agents/agents";
import { loadAgentSecrets } from "../secrets/secrets";
import { assertDeployAllowed } from "../usage/plan-limits";
import type { TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import { type ArtifactBucket, storeBundle } from "./artifacts";
import { type BundleInput, checkBundle } from "./bundle-format";
import { DEFAULT_COMPATIBILITY_DATE, DEFAULT_INVOKE_PATH } from "./defaults";
import type { DeployJob } from "./deploy-job";
import type { SmokeTest } from "./smoke-test";
import { TEMPLATE_MODULE_CODE } from "./template-module.generated";

export type DeployInput = BundleInput & {
  smokeTest?: SmokeTest;
  runtimeProvider?: string;
  compatibilityDate?: string;
  invokePath?: string;
  /** `manual`: the deploy job ends it `ready` instead of making it active. Default `auto`. */
  activation?: DeploymentActivation;
};

export type CreateDeploymentDeps = {
  db: Db;
  userId: string;
  keyring: Keyring;
  tierLimits: TierLimitsByTier;
  artifacts: ArtifactBucket;
  queue: { send(job: DeployJob): Promise<unknown> };
  /** Why a provider cannot be used with the gateway's configuration, or null (default: every one can). */
  providerUnavailable?: (provider: RuntimeProviderName) => string | null;
};

export async function createDeployment(
  deps: CreateDeploymentDeps,
  agentId: string,
  input: DeployInput,
): Promise<DeploymentRow> {
  const runtimeProvider = checkRuntimeProvider(input.runtimeProvider, deps.providerUnavailable);
  const agent = await getAgent(deps, agentId);
  if (agent.status === "disabled") {
    throw new ApiError("agent_disabled", `agent ${agentId} is disabled; it cannot be deployed`);
  }
  // 403 plan_limit_exceeded once the tier's deploys for today are used up.
  await assertDeployAllowed(deps);
  // Checked (400/413) before anything is stored.
  const { tier, limits } = await limitsForUser(deps.db, deps.userId, deps.tierLimits);
  const bundle = await checkBundle(input, { bundleBytes: limits.bundleBytes, tier }, TEMPLATE_MODULE_CODE);
  // The shorthand keeps its documented hash (of the module's text); a bundle's is the bundle's.
  const moduleSha256 =
    input.modules === undefined ? await sha256Hex(bundle.stored.modules[0]?.content ?? "") : bundle.sha256;
  // The object first: a D1 row never names an object that was not written.
  const objectKey = await storeBundle(deps.artifacts, bundle);

  const now = Date.now();
  const deploymentId = newId("deployment", now);
  const telemetrySecret = crypto.getRandomValues(new Uint8Array(32));
  const row: DeploymentRow = {
    id: deploymentId,
    userId: deps.userId,
    agentId,
    status: "deploying",
    runtimeProvider,
    compatibilityDate: input.compatibilityDate ?? DEFAULT_COMPATIBILITY_DATE,
    invokePath: input.invokePath ?? DEFAULT_INVOKE_PATH,
    mainModuleName: bundle.stored.mainModuleName,
    artifactId: "",
    moduleSha256,
    // The raw 32 key bytes, sealed; the user script receives their base64url as TELEMETRY_SECRET.
    telemetrySecretCiphertext: await encryptSecret(deps.keyring, telemetrySecret, telemetrySecretAad(deploymentId)),
    secretsSnapshotCiphertext: await snapshotAgentSecrets(deps, agentId, deploymentId),
    scriptName: scriptNameFor(deploymentId),
    errorMessage: null,
    smokeTest: input.smokeTest ? JSON.stringify(input.smokeTest) : null,
    activation: input.activation ?? "auto",
    claimedAt: null,
    activatedAt: null,
    firstActivatedAt: null,
    scriptRemovedAt: null,
    createdAt: now,
    updatedAt: now,
  };

  // Content-addressed per user: the same bundle deployed twice shares one artifact row (and the
  // object is shared by everyone who deploys it).
  const sha256 = bundle.sha256;
  const artifactIdQuery = sql`(SELECT ${deploymentArtifacts.id} FROM ${deploymentArtifacts}
    WHERE ${deploymentArtifacts.userId} = ${deps.userId} AND ${deploymentArtifacts.sha256} = ${sha256})`;
  const [, [inserted]] = await deps.db.batch([
    deps.db
      .insert(deploymentArtifacts)
      .values({
        id: newId("artifact", now),
        userId: deps.userId,
        sha256,
        moduleCode: "",
        sizeBytes: bundle.sizeBytes,
        storage: "r2",
        objectKey,
        moduleCount: bundle.stored.modules.length,
        createdAt: now,
      })
      // A purged artifact (emptied after its agents were deleted) is live again: its bundle was
      // just stored again above, and an old single-module row becomes an R2 one.
      .onConflictDoUpdate({
        target: [deploymentArtifacts.userId, deploymentArtifacts.sha256],
        set: {
          moduleCode: sql`excluded.module_code`,
          storage: sql`excluded.storage`,
          objectKey: sql`excluded.object_key`,
          moduleCount: sql`excluded.module_count`,
          purgedAt: null,
          objectRemovedAt: null,
        },
        setWhere: sql`${deploymentArtifacts.purgedAt} IS NOT NULL`,
      }),
    deps.db
      .insert(deployments)
      .values({ ...row, artifactId: artifactIdQuery })
      .returning(),
  ]);
  if (!inserted) throw new Error("deployment row missing after insert");
  // Once more, now that a live row names the object: the cron's removal of a purged bundle
  // (services/cleanup/bundle-objects.ts) may have deleted it after our first check found it and
  // before the row landed; it re-checks after deleting, and this check covers the other order.
  await storeBundle(deps.artifacts, bundle);

  try {
    await deps.queue.send({ deploymentId });
  } catch (err) {
    // Without its job the deployment would sit in `deploying` until the sweep: fail it now, visibly.
    logError("deploy_enqueue_failed", { deploymentId, error: describeError(err) });
    await deps.db
      .update(deployments)
      .set({
        status: "failed",
        errorMessage: "the deploy job could not be queued; deploy again",
        updatedAt: Date.now(),
      })
      .where(and(eq(deployments.id, deploymentId), eq(deployments.status, "deploying")));
    throw new ApiError(
      "service_unavailable",
      "the deploy queue is unavailable; the deployment was marked failed, deploy again shortly",
      {
        headers: { "retry-after": "5" },
        extra: { deploymentId },
      },
    );
  }
  return inserted;
}

function checkRuntimeProvider(
  value: string | undefined,
  unavailable: CreateDeploymentDeps["providerUnavailable"],
): RuntimeProviderName {
  if (value === undefined) return "cloudflare";
  const allowed: readonly string[] = RUNTIME_PROVIDERS;
  if (allowed.includes(value)) {
    const why = unavailable?.(value as RuntimeProviderName) ?? null;
    if (why === null) return value as RuntimeProviderName;
    throw new ApiError("unsupported_runtime_provider", `runtimeProvider "${value}" is not available: ${why}`, {
      errors: [{ location: "body.runtimeProvider", message: why }],
      extra: { allowed: RUNTIME_PROVIDERS.filter((p) => unavailable?.(p) === null) },
    });
  }
  throw new ApiError(
    "unsupported_runtime_provider",
    `runtimeProvider "${value.slice(0, 40)}" is not supported; allowed values: ${RUNTIME_PROVIDERS.join(", ")}`,
    {
      errors: [{ location: "body.runtimeProvider", message: `must be one of: ${RUNTIME_PROVIDERS.join(", ")}` }],
      extra: { allowed: [...RUNTIME_PROVIDERS] },
    },
  );
}

/** The agent's secrets now, as one envelope bound to the new deployment; null when there are none. */
async function snapshotAgentSecrets(
  deps: { db: Db; userId: string; keyring: Keyring },
  agentId: string,
  deploymentId: string,
): Promise<string | null> {
  const values = await loadAgentSecrets(deps.db, deps.keyring, { userId: deps.userId, agentId });
  if (Object.keys(values).length === 0) return null;
  return encryptSecret(deps.keyring, JSON.stringify(values), secretsSnapshotAad(deploymentId));
}
