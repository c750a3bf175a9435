// The audit log: who changed what, when. `recordAudit` builds the insert without running it, so
// callers put it in the same `db.batch` as the change itself (one transaction: both rows land or
// neither does). Details carry names and ids only, never secret values.
import { and, desc, eq, lt, type SQL } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { selectRowWhere } from "../../db/insert-select";
import { auditLog } from "../../db/schema";
import { newId } from "../../lib/ids";

export const AUDIT_ACTIONS = [
  "secret.set",
  "secret.deleted",
  "tier.changed",
  "api_key.created",
  "api_key.revoked",
  "egress.policy_set",
  "webhook.created",
  "webhook.deleted",
  "webhook.secret_rotated",
  "rollout.started",
  "rollout.advanced",
  "rollout.aborted",
  "rollout.completed",
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export type AuditEntry = {
  /** Whose log the entry belongs to (the account that was changed). */
  userId: string;
  /**
   * Who did it: `user:<id>` for API callers, `operator:<tool>` for operator commands, `system:<task>`
   * for the gateway's own decisions (a rollout the evaluator advanced or aborted).
   */
  actor: string;
  action: AuditAction;
  targetType: "agent" | "user" | "api_key" | "webhook" | "rollout";
  targetId: string;
  details?: Record<string, string | number | boolean | null>;
};

export type AuditRow = typeof auditLog.$inferSelect;

export const userActor = (userId: string) => `user:${userId}`;

/**
 * The insert for one audit entry, to run inside the change's `db.batch`. With `onlyIf`, the row
 * is written only when that SQL condition holds at that point of the batch (e.g. "the secret row
 * now holds the new ciphertext"), so a change that matched nothing leaves no audit entry.
 */
export function recordAudit(db: Db, entry: AuditEntry, opts: { onlyIf?: SQL; now?: number } = {}): BatchItem<"sqlite"> {
  const now = opts.now ?? Date.now();
  const id = newId("audit", now);
  const details = entry.details ?? null;
  if (!opts.onlyIf) {
    return db.insert(auditLog).values({ id, ...entry, details, createdAt: now });
  }
  return db.insert(auditLog).select(selectRowWhere(auditLog, { id, ...entry, details, createdAt: now }, opts.onlyIf));
}

/** The caller's own entries, newest first; `beforeId` continues after a previous page. */
export async function listAuditEntries(
  { db, userId }: { db: Db; userId: string },
  input: { limit: number; beforeId?: string },
): Promise<{ rows: AuditRow[]; hasMore: boolean }> {
  const rows = await db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.userId, userId), input.beforeId ? lt(auditLog.id, input.beforeId) : undefined))
    // Ids start with their creation time in ms, so id order is time order (ties broken by id).
    .orderBy(desc(auditLog.id))
    .limit(input.limit + 1);
  return { rows: rows.slice(0, input.limit), hasMore: rows.length > input.limit };
}
