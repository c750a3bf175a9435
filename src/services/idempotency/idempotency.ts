// Idempotency-Key records. The rules (docs/api.md "Idempotency-Key"):
// - A record is per (principal, route, key): the user and the API key (or "jwt"), and the method
//   with the concrete path. It lives IDEMPOTENCY_TTL_MS (24 h) from its claim.
// - The first request claims the key with one conditional statement (INSERT … ON CONFLICT DO
//   UPDATE … WHERE the old record expired, or its claim is abandoned and the body is the same), so
//   of concurrent requests exactly one runs.
// - A final answer (2xx, 4xx other than 429) is stored with its status, the headers that matter
//   and its body; anything else (5xx, 429, an answer too large to store) releases the claim so a
//   retry runs again.
// - A claim not completed within IDEMPOTENCY_LOCK_MS (the request died with its isolate) may be
//   taken over by a repeat with the same body.
import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { type IdempotencyRow, idempotencyKeys } from "../../db/schema";
import { pauseBetweenSteps } from "../../lib/pause";

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60_000;
export const IDEMPOTENCY_LOCK_MS = 5 * 60_000;
export const IDEMPOTENCY_KEY_MAX_CHARS = 255;
/** Largest answer body stored for replay; a larger answer is not stored and the key is released. */
export const IDEMPOTENCY_MAX_BODY_BYTES = 1024 * 1024;
/** Response headers kept for replay (content type, where the object lives, which deployment answered). */
export const REPLAYED_HEADERS = ["content-type", "location", "x-deployment-id"] as const;

export type IdempotencyScope = { principal: string; route: string; key: string };

export type ClaimOutcome =
  | { kind: "claimed"; claimId: string }
  | { kind: "replay"; status: number; headers: Record<string, string>; body: string | null }
  | { kind: "reused" }
  | { kind: "in_progress"; retryAfterSeconds: number };

const at = (s: IdempotencyScope) =>
  and(eq(idempotencyKeys.principal, s.principal), eq(idempotencyKeys.route, s.route), eq(idempotencyKeys.key, s.key));

export async function claimIdempotencyKey(
  db: Db,
  scope: IdempotencyScope,
  fingerprint: string,
  opts: { now?: number } = {},
): Promise<ClaimOutcome> {
  const now = opts.now ?? Date.now();
  // A record can vanish between the claim and the read (released or purged); then claim again.
  for (let attempt = 0; attempt < 3; attempt++) {
    const claimId = crypto.randomUUID();
    const fresh = {
      fingerprint,
      state: "running" as const,
      claimId,
      lockedUntil: now + IDEMPOTENCY_LOCK_MS,
      statusCode: null,
      headers: null,
      body: null,
      createdAt: now,
      expiresAt: now + IDEMPOTENCY_TTL_MS,
    };
    const claimed = await db
      .insert(idempotencyKeys)
      .values({ ...scope, ...fresh })
      .onConflictDoUpdate({
        target: [idempotencyKeys.principal, idempotencyKeys.route, idempotencyKeys.key],
        set: fresh,
        setWhere: sql`${idempotencyKeys.expiresAt} <= ${now} OR (${idempotencyKeys.state} = 'running' AND ${idempotencyKeys.lockedUntil} <= ${now} AND ${idempotencyKeys.fingerprint} = ${fingerprint})`,
      })
      .returning({ claimId: idempotencyKeys.claimId });
    if (claimed[0]?.claimId === claimId) return { kind: "claimed", claimId };
    const row = await db.query.idempotencyKeys.findFirst({ where: at(scope) });
    if (!row) continue;
    return decide(row, fingerprint, now);
  }
  // Three races in a row: let the client come back rather than run unprotected.
  return { kind: "in_progress", retryAfterSeconds: 1 };
}

function decide(row: IdempotencyRow, fingerprint: string, now: number): ClaimOutcome {
  if (row.fingerprint !== fingerprint) return { kind: "reused" };
  if (row.state === "running" || row.statusCode === null) {
    return {
      kind: "in_progress",
      retryAfterSeconds: Math.max(1, Math.min(5, Math.ceil((row.lockedUntil - now) / 1000))),
    };
  }
  return { kind: "replay", status: row.statusCode, headers: row.headers ?? {}, body: row.body };
}

/** Stores the final answer of the request holding the claim. */
export async function completeIdempotencyKey(
  db: Db,
  scope: IdempotencyScope,
  claimId: string,
  answer: { status: number; headers: Record<string, string>; body: string | null },
): Promise<void> {
  await db
    .update(idempotencyKeys)
    .set({ state: "done", statusCode: answer.status, headers: answer.headers, body: answer.body })
    .where(and(at(scope), eq(idempotencyKeys.claimId, claimId), eq(idempotencyKeys.state, "running")));
}

/** Gives the key up (5xx, 429, an answer too large to keep): the next request with it runs again. */
export async function releaseIdempotencyKey(db: Db, scope: IdempotencyScope, claimId: string): Promise<void> {
  await db
    .delete(idempotencyKeys)
    .where(and(at(scope), eq(idempotencyKeys.claimId, claimId), eq(idempotencyKeys.state, "running")));
}

/** Deletes expired records, `batchSize` at a time, at most `maxBatches` batches per call. */
export async function purgeExpiredIdempotencyKeys(
  db: Db,
  opts: { batchSize: number; maxBatches: number; now?: number },
): Promise<{ deleted: number; complete: boolean }> {
  const now = opts.now ?? Date.now();
  let deleted = 0;
  for (let batch = 0; batch < opts.maxBatches; batch++) {
    const rowids = sql`SELECT rowid FROM ${idempotencyKeys} WHERE ${idempotencyKeys.expiresAt} <= ${now} LIMIT ${opts.batchSize}`;
    const gone = await db
      .delete(idempotencyKeys)
      .where(sql`rowid IN (${rowids})`)
      .returning({ key: idempotencyKeys.key });
    deleted += gone.length;
    if (gone.length < opts.batchSize) return { deleted, complete: true };
    await pauseBetweenSteps();
  }
  return { deleted, complete: false };
}
