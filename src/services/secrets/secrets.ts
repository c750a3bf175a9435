// Write-only agent secrets. A value is stored only as an AES-256-GCM envelope whose additional
// data names (agent, secret name), and leaves this module only through `loadAgentSecrets`, which
// the deploy path uses to snapshot an agent's secrets into a new deployment. Every change writes
// its audit entry in the same batch; neither the audit log nor any error ever holds a value.
import { and, asc, eq, sql } from "drizzle-orm";
import { agentSecretAad } from "../../crypto/aad";
import { DecryptionError, decryptSecretText, encryptSecret } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { selectRowWhere } from "../../db/insert-select";
import { agentSecrets } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { newId } from "../../lib/ids";
import { PLATFORM_BINDING_NAMES } from "../../runtime/user-script";
import { getAgent } from "../agents/agents";
import { recordAudit, userActor } from "../audit/audit";
import type { TenantDeps } from "../tenant";

/** Environment-variable style: upper case letters, digits and `_`, not starting with a digit. */
export const SECRET_NAME_PATTERN = /^[A-Z_][A-Z0-9_]{0,63}$/;
/** Cloudflare's limit for one environment value (secret_text binding) is 5 KiB. */
export const MAX_SECRET_VALUE_BYTES = 5 * 1024;
/** Keeps an agent's env (platform bindings + secrets) well inside Cloudflare's 64 per script. */
export const MAX_SECRETS_PER_AGENT = 50;

const RESERVED = new Set<string>(PLATFORM_BINDING_NAMES);

export function isReservedSecretName(name: string): boolean {
  return RESERVED.has(name);
}

/** Why a name is refused, or undefined when it is acceptable. */
export function secretNameProblem(name: string): string | undefined {
  if (!SECRET_NAME_PATTERN.test(name)) {
    return "name must be 1-64 characters of A-Z, 0-9 and _, not starting with a digit";
  }
  if (isReservedSecretName(name)) return `${name} is set by the platform and cannot be a secret`;
  return undefined;
}

export function secretValueProblem(value: string): string | undefined {
  if (value.length === 0) return "value must not be empty (delete the secret instead)";
  const bytes = new TextEncoder().encode(value).length;
  if (bytes > MAX_SECRET_VALUE_BYTES) return `value must be at most ${MAX_SECRET_VALUE_BYTES} bytes (UTF-8)`;
  return undefined;
}

export type SecretMetadata = { name: string; createdAt: number; updatedAt: number };

function secretNotFound(agentId: string, name: string): ApiError {
  return new ApiError("not_found", `agent ${agentId} has no secret named ${name}`);
}

function assertValid(name: string, value?: string): void {
  const errors = [];
  const nameProblem = secretNameProblem(name);
  if (nameProblem) errors.push({ location: "path.name", message: nameProblem });
  const valueProblem = value === undefined ? undefined : secretValueProblem(value);
  if (valueProblem) errors.push({ location: "body.value", message: valueProblem });
  if (errors.length > 0)
    throw new ApiError("validation_failed", `${errors.length} field(s) failed validation`, { errors });
}

/**
 * Creates or replaces a secret. The upsert is conditional on the agent still being the caller's
 * and live, and on the agent having room for one more name, so the count limit holds under
 * concurrency; the audit entry is written only if the new ciphertext actually landed.
 */
export async function putAgentSecret(
  deps: TenantDeps & { keyring: Keyring },
  input: { agentId: string; name: string; value: string },
): Promise<SecretMetadata & { created: boolean }> {
  const { db, userId } = deps;
  const { agentId, name } = input;
  assertValid(name, input.value);
  await getAgent(deps, agentId);
  const now = Date.now();
  const ciphertext = await encryptSecret(deps.keyring, input.value, agentSecretAad(agentId, name));
  const [rows] = await db.batch([
    db
      .insert(agentSecrets)
      .select(
        selectRowWhere(
          agentSecrets,
          { id: newId("secret", now), userId, agentId, name, ciphertext, createdAt: now, updatedAt: now },
          sql`EXISTS (SELECT 1 FROM agents WHERE id = ${agentId} AND user_id = ${userId} AND deleted_at IS NULL)
            AND ((SELECT COUNT(*) FROM agent_secrets WHERE agent_id = ${agentId}) < ${MAX_SECRETS_PER_AGENT}
                 OR EXISTS (SELECT 1 FROM agent_secrets WHERE agent_id = ${agentId} AND name = ${name}))`,
        ),
      )
      .onConflictDoUpdate({
        target: [agentSecrets.agentId, agentSecrets.name],
        set: { ciphertext: sql`excluded.ciphertext`, updatedAt: sql`excluded.updated_at` },
      })
      .returning({ createdAt: agentSecrets.createdAt, updatedAt: agentSecrets.updatedAt }),
    recordAudit(
      db,
      {
        userId,
        actor: userActor(userId),
        action: "secret.set",
        targetType: "agent",
        targetId: agentId,
        details: { name },
      },
      {
        now,
        onlyIf: sql`EXISTS (SELECT 1 FROM agent_secrets WHERE agent_id = ${agentId} AND name = ${name} AND ciphertext = ${ciphertext})`,
      },
    ),
  ]);
  const row = rows[0];
  if (!row) {
    // Nothing written: the agent went away meanwhile (404) or it has no room for a new name.
    await getAgent(deps, agentId);
    throw new ApiError(
      "too_many_secrets",
      `an agent can hold at most ${MAX_SECRETS_PER_AGENT} secrets; delete one before adding ${name}`,
      { extra: { max: MAX_SECRETS_PER_AGENT } },
    );
  }
  // created_at is only ours when this call inserted the row.
  return { name, createdAt: row.createdAt, updatedAt: row.updatedAt, created: row.createdAt === now };
}

/** Names and times of an agent's secrets, by name. Values are never read here. */
export async function listAgentSecrets(deps: TenantDeps, agentId: string): Promise<SecretMetadata[]> {
  await getAgent(deps, agentId);
  return deps.db
    .select({ name: agentSecrets.name, createdAt: agentSecrets.createdAt, updatedAt: agentSecrets.updatedAt })
    .from(agentSecrets)
    .where(and(eq(agentSecrets.agentId, agentId), eq(agentSecrets.userId, deps.userId)))
    .orderBy(asc(agentSecrets.name));
}

export async function deleteAgentSecret(deps: TenantDeps, input: { agentId: string; name: string }): Promise<void> {
  const { db, userId } = deps;
  const { agentId, name } = input;
  assertValid(name);
  await getAgent(deps, agentId);
  const where = and(eq(agentSecrets.agentId, agentId), eq(agentSecrets.userId, userId), eq(agentSecrets.name, name));
  // Audit first, conditional on the row existing: in the same batch, so it is written exactly
  // when the delete below removes something.
  const [, deleted] = await db.batch([
    recordAudit(
      db,
      {
        userId,
        actor: userActor(userId),
        action: "secret.deleted",
        targetType: "agent",
        targetId: agentId,
        details: { name },
      },
      {
        onlyIf: sql`EXISTS (SELECT 1 FROM agent_secrets WHERE agent_id = ${agentId} AND user_id = ${userId} AND name = ${name})`,
      },
    ),
    db.delete(agentSecrets).where(where).returning({ id: agentSecrets.id }),
  ]);
  if (deleted.length === 0) throw secretNotFound(agentId, name);
}

/**
 * Every secret of an agent, decrypted: what a new deployment snapshots. Throws a
 * DecryptionError naming the secret (never its value) if one cannot be decrypted.
 */
export async function loadAgentSecrets(
  db: Db,
  keyring: Keyring,
  owner: { userId: string; agentId: string },
): Promise<Record<string, string>> {
  const { agentId } = owner;
  const rows = await db
    .select({ name: agentSecrets.name, ciphertext: agentSecrets.ciphertext })
    .from(agentSecrets)
    .where(and(eq(agentSecrets.agentId, agentId), eq(agentSecrets.userId, owner.userId)))
    .orderBy(asc(agentSecrets.name));
  const out: Record<string, string> = {};
  for (const row of rows) {
    try {
      out[row.name] = await decryptSecretText(keyring, row.ciphertext, agentSecretAad(agentId, row.name));
    } catch (err) {
      const reason = err instanceof DecryptionError ? err.message : "unexpected error";
      throw new DecryptionError(`agent secret ${row.name} could not be decrypted: ${reason}`);
    }
  }
  return out;
}
