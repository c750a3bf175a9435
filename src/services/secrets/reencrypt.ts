// Key rotation, second half: re-encrypts stored secret material that is under one of the
// previous keys (SECRETS_ENCRYPTION_PREVIOUS_KEYS) into the current SECRETS_ENCRYPTION_KEY: agent
// secrets, deployment telemetry secrets, deployment secret snapshots, webhook signing secrets
// (current and, during a secret rotation, previous). The cron runs it every time;
// it costs nothing while no previous key is configured. Only rows sealed under a configured
// previous key are selected, so rows under keys nobody holds any more (undecryptable anyway)
// cannot crowd out the rest. Each row is rewritten with a conditional UPDATE (WHERE ciphertext =
// the value it read), so a writer that changed the row meanwhile always wins.
import { and, asc, eq, getTableColumns, gt, isNotNull, type SQL, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
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

/**
 * One sealed column: its rows under a previous key, page by page in id order, each with the
 * additional data it was sealed with (`aadOf`, given the row's id and the `context` columns), and
 * its conditional update.
 */
function sealedColumn<C extends Record<string, SQLiteColumn>>(spec: {
  column: ReencryptColumn;
  table: SQLiteTable;
  id: SQLiteColumn;
  ciphertext: SQLiteColumn;
  context?: C;
  aadOf: (row: { id: string } & { [K in keyof C]: string }) => string;
}): Target {
  // The property that holds the column, as `.set()` names it (found, not written twice).
  const field = Object.entries(getTableColumns(spec.table)).find(([, c]) => c === spec.ciphertext)?.[0];
  if (!field) throw new Error(`${spec.column} is not a column of its table`);
  return {
    column: spec.column,
    ciphertextColumn: spec.ciphertext,
    async page(db, underPrevious, afterId, limit) {
      const rows = (await db
        .select({ ...spec.context, id: spec.id, ciphertext: spec.ciphertext })
        .from(spec.table)
        .where(and(gt(spec.id, afterId), isNotNull(spec.ciphertext), underPrevious))
        .orderBy(asc(spec.id))
        .limit(limit)) as ({ id: string; ciphertext: string } & { [K in keyof C]: string })[];
      return rows.map((r) => ({ id: r.id, ciphertext: r.ciphertext, aad: spec.aadOf(r) }));
    },
    update: (db, id, from, to) =>
      db
        .update(spec.table)
        .set({ [field]: to })
        .where(and(eq(spec.id, id), eq(spec.ciphertext, from)))
        .returning({ id: spec.id }),
  };
}

const TARGETS: Target[] = [
  sealedColumn({
    column: "agent_secrets.ciphertext",
    table: agentSecrets,
    id: agentSecrets.id,
    ciphertext: agentSecrets.ciphertext,
    context: { agentId: agentSecrets.agentId, name: agentSecrets.name },
    aadOf: (r) => agentSecretAad(r.agentId, r.name),
  }),
  sealedColumn({
    column: "deployments.telemetry_secret_ciphertext",
    table: deployments,
    id: deployments.id,
    ciphertext: deployments.telemetrySecretCiphertext,
    aadOf: (r) => telemetrySecretAad(r.id),
  }),
  sealedColumn({
    column: "deployments.secrets_snapshot_ciphertext",
    table: deployments,
    id: deployments.id,
    ciphertext: deployments.secretsSnapshotCiphertext,
    aadOf: (r) => secretsSnapshotAad(r.id),
  }),
  sealedColumn({
    column: "webhook_endpoints.secret_ciphertext",
    table: webhookEndpoints,
    id: webhookEndpoints.id,
    ciphertext: webhookEndpoints.secretCiphertext,
    aadOf: (r) => webhookSecretAad(r.id),
  }),
  sealedColumn({
    column: "webhook_endpoints.previous_secret_ciphertext",
    table: webhookEndpoints,
    id: webhookEndpoints.id,
    ciphertext: webhookEndpoints.previousSecretCiphertext,
    aadOf: (r) => webhookSecretAad(r.id),
  }),
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
