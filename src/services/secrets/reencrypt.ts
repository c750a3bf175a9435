// Key rotation, second half: re-encrypts stored secret material that is under one of the
// previous keys (SECRETS_ENCRYPTION_PREVIOUS_KEYS) into the current SECRETS_ENCRYPTION_KEY: agent
// secrets, deployment telemetry secrets, deployment secret snapshots, webhook signing secrets
// (current and, during a secret rotation, previous). The cron runs it every time;
// it costs nothing while no previous key is configured. Only rows sealed under a configured
// previous key are selected, so rows under keys nobody holds any more (undecryptable anyway)
// cannot crowd out the rest. Each row is rewritten with a conditional UPDATE (WHERE ciphertext =
// the value it read), so a writer that changed the row meanwhile always wins.
import { and, asc, eq, gt, isNotNull, type SQL, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";
import { agentSecretAad, secretsSnapshotAad, telemetrySecretAad, webhookSecretAad } from "../../crypto/aad";
import { decryptSecret, encryptSecret } from "../../crypto/envelope";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { agentSecrets, deployments, webhookEndpoints } from "../../db/schema";
import { pauseBetweenSteps } from "../../lib/pause";

export const REENCRYPT_COLUMNS = [
  "agent_secrets.ciphertext",
  "deployments.telemetry_secret_ciphertext",
  "deployments.secrets_snapshot_ciphertext",
  "webhook_endpoints.secret_ciphertext",
  "webhook_endpoints.previous_secret_ciphertext",
] as const;
export type ReencryptColumn = (typeof REENCRYPT_COLUMNS)[number];

export type ColumnReport = {
  /** Rows found under a previous key. */
  scanned: number;
  reencrypted: number;
  /** Rows changed by someone else between read and write (left as the other writer wrote them). */
  conflicts: number;
  /** Rows under a previous key that did not decrypt (tampered or moved ciphertext). */
  failed: number;
  /** True when the scan reached the end of the table in this run. */
  exhausted: boolean;
};

export type ReencryptReport = {
  currentKeyId: string;
  /** Set when there was nothing to do: only one key is configured. */
  skipped?: "no previous keys configured";
  columns: Record<ReencryptColumn, ColumnReport>;
  /** Every column exhausted with no failures: nothing is left under the previous keys. */
  complete: boolean;
  /** The first failures (row ids and reasons only). */
  failures: { column: ReencryptColumn; rowId: string; reason: string }[];
};

export type ReencryptOptions = { batchSize?: number; maxBatches?: number };

type StaleRow = { id: string; ciphertext: string; aad: string };

type Target = {
  column: ReencryptColumn;
  ciphertextColumn: SQLiteColumn;
  page(db: Db, underPrevious: SQL, afterId: string, limit: number): Promise<StaleRow[]>;
  /** Sets the new ciphertext only if the row still holds the old one; returns the changed ids. */
  update(db: Db, id: string, from: string, to: string): BatchItem<"sqlite">;
};

/** `column` holds an envelope sealed under one of `keyIds` (all key ids have the same length). */
const sealedUnder = (column: SQLiteColumn, keyIds: string[]) => {
  const prefixes = keyIds.map((id) => `v1.${id}.`);
  return sql`substr(${column}, 1, ${prefixes[0]!.length}) IN (${sql.join(
    prefixes.map((p) => sql`${p}`),
    sql`, `,
  )})`;
};

const TARGETS: Target[] = [
  {
    column: "agent_secrets.ciphertext",
    ciphertextColumn: agentSecrets.ciphertext,
    async page(db, underPrevious, afterId, limit) {
      const rows = await db
        .select({
          id: agentSecrets.id,
          agentId: agentSecrets.agentId,
          name: agentSecrets.name,
          ciphertext: agentSecrets.ciphertext,
        })
        .from(agentSecrets)
        .where(and(gt(agentSecrets.id, afterId), underPrevious))
        .orderBy(asc(agentSecrets.id))
        .limit(limit);
      return rows.map((r) => ({ id: r.id, ciphertext: r.ciphertext, aad: agentSecretAad(r.agentId, r.name) }));
    },
    update: (db, id, from, to) =>
      db
        .update(agentSecrets)
        .set({ ciphertext: to })
        .where(and(eq(agentSecrets.id, id), eq(agentSecrets.ciphertext, from)))
        .returning({ id: agentSecrets.id }),
  },
  {
    column: "deployments.telemetry_secret_ciphertext",
    ciphertextColumn: deployments.telemetrySecretCiphertext,
    async page(db, underPrevious, afterId, limit) {
      const rows = await db
        .select({ id: deployments.id, ciphertext: deployments.telemetrySecretCiphertext })
        .from(deployments)
        .where(and(gt(deployments.id, afterId), underPrevious))
        .orderBy(asc(deployments.id))
        .limit(limit);
      return rows.map((r) => ({ id: r.id, ciphertext: r.ciphertext, aad: telemetrySecretAad(r.id) }));
    },
    update: (db, id, from, to) =>
      db
        .update(deployments)
        .set({ telemetrySecretCiphertext: to })
        .where(and(eq(deployments.id, id), eq(deployments.telemetrySecretCiphertext, from)))
        .returning({ id: deployments.id }),
  },
  {
    column: "deployments.secrets_snapshot_ciphertext",
    ciphertextColumn: deployments.secretsSnapshotCiphertext,
    async page(db, underPrevious, afterId, limit) {
      const rows = await db
        .select({ id: deployments.id, ciphertext: deployments.secretsSnapshotCiphertext })
        .from(deployments)
        .where(and(gt(deployments.id, afterId), isNotNull(deployments.secretsSnapshotCiphertext), underPrevious))
        .orderBy(asc(deployments.id))
        .limit(limit);
      return rows.map((r) => ({ id: r.id, ciphertext: r.ciphertext ?? "", aad: secretsSnapshotAad(r.id) }));
    },
    update: (db, id, from, to) =>
      db
        .update(deployments)
        .set({ secretsSnapshotCiphertext: to })
        .where(and(eq(deployments.id, id), eq(deployments.secretsSnapshotCiphertext, from)))
        .returning({ id: deployments.id }),
  },
  {
    column: "webhook_endpoints.secret_ciphertext",
    ciphertextColumn: webhookEndpoints.secretCiphertext,
    async page(db, underPrevious, afterId, limit) {
      const rows = await db
        .select({ id: webhookEndpoints.id, ciphertext: webhookEndpoints.secretCiphertext })
        .from(webhookEndpoints)
        .where(and(gt(webhookEndpoints.id, afterId), underPrevious))
        .orderBy(asc(webhookEndpoints.id))
        .limit(limit);
      return rows.map((r) => ({ id: r.id, ciphertext: r.ciphertext, aad: webhookSecretAad(r.id) }));
    },
    update: (db, id, from, to) =>
      db
        .update(webhookEndpoints)
        .set({ secretCiphertext: to })
        .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.secretCiphertext, from)))
        .returning({ id: webhookEndpoints.id }),
  },
  {
    column: "webhook_endpoints.previous_secret_ciphertext",
    ciphertextColumn: webhookEndpoints.previousSecretCiphertext,
    async page(db, underPrevious, afterId, limit) {
      const rows = await db
        .select({ id: webhookEndpoints.id, ciphertext: webhookEndpoints.previousSecretCiphertext })
        .from(webhookEndpoints)
        .where(
          and(gt(webhookEndpoints.id, afterId), isNotNull(webhookEndpoints.previousSecretCiphertext), underPrevious),
        )
        .orderBy(asc(webhookEndpoints.id))
        .limit(limit);
      return rows.map((r) => ({ id: r.id, ciphertext: r.ciphertext ?? "", aad: webhookSecretAad(r.id) }));
    },
    update: (db, id, from, to) =>
      db
        .update(webhookEndpoints)
        .set({ previousSecretCiphertext: to })
        .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.previousSecretCiphertext, from)))
        .returning({ id: webhookEndpoints.id }),
  },
];

const MAX_REPORTED_FAILURES = 20;

/** Re-seals, in bounded batches, every secret still sealed under a previous key of `keyring`. */
export async function reencryptStaleSecrets(
  { db, keyring }: { db: Db; keyring: Keyring },
  { batchSize = 50, maxBatches = 10 }: ReencryptOptions = {},
): Promise<ReencryptReport> {
  const currentKeyId = keyring.current.id;
  const columns = Object.fromEntries(
    REENCRYPT_COLUMNS.map((c) => [c, { scanned: 0, reencrypted: 0, conflicts: 0, failed: 0, exhausted: true }]),
  ) as Record<ReencryptColumn, ColumnReport>;
  const previousIds = [...keyring.byId.keys()].filter((id) => id !== currentKeyId);
  if (previousIds.length === 0) {
    return { currentKeyId, skipped: "no previous keys configured", columns, complete: true, failures: [] };
  }
  const failures: ReencryptReport["failures"] = [];
  for (const target of TARGETS) {
    const report = columns[target.column];
    report.exhausted = false;
    const underPrevious = sealedUnder(target.ciphertextColumn, previousIds);
    let afterId = "";
    for (let i = 0; i < maxBatches; i++) {
      if (i > 0) await pauseBetweenSteps();
      const rows = await target.page(db, underPrevious, afterId, batchSize);
      report.scanned += rows.length;
      const updates: BatchItem<"sqlite">[] = [];
      for (const row of rows) {
        try {
          const plain = await decryptSecret(keyring, row.ciphertext, row.aad);
          updates.push(target.update(db, row.id, row.ciphertext, await encryptSecret(keyring, plain, row.aad)));
        } catch (err) {
          report.failed++;
          if (failures.length < MAX_REPORTED_FAILURES) {
            failures.push({ column: target.column, rowId: row.id, reason: (err as Error).message });
          }
        }
      }
      if (updates.length > 0) {
        const results = (await db.batch(updates as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]])) as unknown[][];
        for (const changed of results) {
          if (changed.length > 0) report.reencrypted++;
          else report.conflicts++;
        }
      }
      const last = rows.at(-1);
      if (!last || rows.length < batchSize) {
        report.exhausted = true;
        break;
      }
      afterId = last.id;
    }
  }
  const complete = REENCRYPT_COLUMNS.every((c) => columns[c].exhausted && columns[c].failed === 0);
  return { currentKeyId, columns, complete, failures };
}
