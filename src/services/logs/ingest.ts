// Stores what an agent's script printed: the traces the runtime hands the gateway's tail handler
// (the loader's `tails`, or the namespace upload's `tail_consumers`) become log lines in the
// agent's AgentLogs Durable Object. Whose script a trace is comes from the tail binding's props
// (loader) or the script's tags (namespace), and is checked against the deployment's row; the
// deployment's own secret values (its snapshot and its telemetry key) are redacted before
// anything is stored.
import { eq } from "drizzle-orm";
import { secretsSnapshotAad, telemetrySecretAad } from "../../crypto/aad";
import { toBase64Url } from "../../crypto/encoding";
import { decryptSecret, decryptSecretText } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { deployments } from "../../db/schema";
import { IsolateCache } from "../../lib/isolate-cache";
import { describeError, logError } from "../../lib/logger";
import { type CapturedTrace, hasContent } from "../../runtime/traces";
import { identityFromTags, type TelemetryBindingProps } from "../../runtime/user-script";
import type { TierLimits, TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import { linesFromTrace, type Redactor, redactorFor } from "./capture";
import type { AgentLogStores, LogBufferLimits, NewLogLine } from "./types";

export type LogIngestDeps = {
  db: Db;
  keyring: Keyring;
  tierLimits: TierLimitsByTier;
  logs: AgentLogStores;
  waitUntil?: (promise: Promise<unknown>) => void;
};

/** Whose script produced a trace. */
export type ScriptIdentity = TelemetryBindingProps;

// Per isolate, by deployment id: a deployment's secret snapshot never changes, so its redactor is
// kept for 10 minutes (not longer, so decrypted values do not linger in memory); an unknown id 30 s.
// The entry is also the check that the deployment belongs to the agent and user named.
const redactors = new IsolateCache<string, { userId: string; agentId: string; redact: Redactor } | null>({
  maxEntries: 500,
  ttlMs: 10 * 60_000,
  ttlOf: (v) => (v === null ? 30_000 : 10 * 60_000),
});

export function bufferLimits(limits: TierLimits): LogBufferLimits {
  return { maxLines: limits.logLines, retentionMs: limits.logRetentionHours * 3_600_000 };
}

/**
 * Stores the lines of these traces. `fromProps` is the identity the gateway put on the loader's
 * tail binding; without it (a namespace tail) each trace names its script by its tags.
 */
export async function ingestTraces(
  deps: LogIngestDeps,
  traces: ReadonlyArray<CapturedTrace & { scriptTags?: string[] }>,
  fromProps?: Partial<ScriptIdentity>,
): Promise<number> {
  const byAgent = new Map<string, { userId: string; lines: NewLogLine[] }>();
  for (const trace of traces) {
    // Most invocations print nothing: those cost no lookup at all.
    if (!hasContent(trace)) continue;
    const who = completeIdentity(fromProps) ?? identityFromTags(trace.scriptTags ?? []);
    if (!who) continue;
    const known = await redactors.get(who.deploymentId, () => loadRedactor(deps, who.deploymentId), {
      waitUntil: deps.waitUntil,
    });
    // A trace naming a deployment that is not this agent's (or none) is not stored anywhere.
    if (!known || known.userId !== who.userId || known.agentId !== who.agentId) continue;
    const lines = linesFromTrace(trace, who.deploymentId, known.redact);
    if (lines.length === 0) continue;
    const entry = byAgent.get(who.agentId) ?? { userId: who.userId, lines: [] };
    entry.lines.push(...lines);
    byAgent.set(who.agentId, entry);
  }
  let stored = 0;
  for (const [agentId, { userId, lines }] of byAgent) {
    const { limits } = await limitsForUser(deps.db, userId, deps.tierLimits, { waitUntil: deps.waitUntil });
    try {
      await deps.logs(agentId).append(lines, bufferLimits(limits));
      stored += lines.length;
    } catch (err) {
      logError("agent_logs_append_failed", { agentId, lines: lines.length, error: describeError(err) });
    }
  }
  return stored;
}

function completeIdentity(p: Partial<ScriptIdentity> | undefined): ScriptIdentity | undefined {
  if (!p || typeof p.userId !== "string" || typeof p.agentId !== "string" || typeof p.deploymentId !== "string") {
    return undefined;
  }
  return { userId: p.userId, agentId: p.agentId, deploymentId: p.deploymentId };
}

async function loadRedactor(
  deps: Pick<LogIngestDeps, "db" | "keyring">,
  deploymentId: string,
): Promise<{ userId: string; agentId: string; redact: Redactor } | null> {
  const row = await deps.db
    .select({
      userId: deployments.userId,
      agentId: deployments.agentId,
      telemetrySecretCiphertext: deployments.telemetrySecretCiphertext,
      secretsSnapshotCiphertext: deployments.secretsSnapshotCiphertext,
    })
    .from(deployments)
    .where(eq(deployments.id, deploymentId))
    .get();
  if (!row) return null;
  const values: string[] = [
    toBase64Url(await decryptSecret(deps.keyring, row.telemetrySecretCiphertext, telemetrySecretAad(deploymentId))),
  ];
  if (row.secretsSnapshotCiphertext) {
    const secrets = JSON.parse(
      await decryptSecretText(deps.keyring, row.secretsSnapshotCiphertext, secretsSnapshotAad(deploymentId)),
    ) as Record<string, string>;
    values.push(...Object.values(secrets));
  }
  return { userId: row.userId, agentId: row.agentId, redact: redactorFor(values) };
}

/** Test seam: forget cached redactors (a test that re-seeds the database). */
export function forgetLogRedactors(): void {
  redactors.clear();
}
