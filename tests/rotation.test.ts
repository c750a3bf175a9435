import { createExecutionContext, createScheduledController } from "cloudflare:test";
import { and, eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { secretsSnapshotAad, telemetrySecretAad } from "../src/crypto/aad";
import { decryptSecretText, encryptSecret, envelopeKeyId } from "../src/crypto/envelope";
import { type Keyring, parseKeyring } from "../src/crypto/keys";
import { createDb, type Db } from "../src/db/client";
import { agentSecrets, deployments } from "../src/db/schema";
import { type Env, getConfig } from "../src/env";
import worker from "../src/index";
import { reencryptStaleSecrets } from "../src/services/secrets/reencrypt";
import { loadAgentSecrets, putAgentSecret } from "../src/services/secrets/secrets";
import { envWith, randomKey } from "./helpers/env-override";
import { db, insertDeployment, insertUserAndAgent } from "./helpers/fixtures";

/** What the cron does: the keyring from the environment's configuration. */
async function reencryptFromEnv(testEnv: Env, opts?: Parameters<typeof reencryptStaleSecrets>[1]) {
  const { keyring } = await getConfig(testEnv);
  return reencryptStaleSecrets({ db: createDb(testEnv.DB), keyring }, opts);
}

/** An agent with two secrets and two deployments (one without a snapshot), all under `ring`. */
async function seedUnder(ring: Keyring) {
  const { userId, agentId } = await insertUserAndAgent();
  await putAgentSecret({ db, userId, keyring: ring }, { agentId, name: "API_KEY", value: "api-key-value" });
  await putAgentSecret({ db, userId, keyring: ring }, { agentId, name: "DB_URL", value: "postgres://db" });
  const withSnapshot = await insertDeployment({ userId, agentId });
  const withoutSnapshot = await insertDeployment({ userId, agentId });
  for (const id of [withSnapshot, withoutSnapshot]) {
    await db
      .update(deployments)
      .set({
        telemetrySecretCiphertext: await encryptSecret(ring, `telemetry-${id}`, telemetrySecretAad(id)),
        secretsSnapshotCiphertext:
          id === withSnapshot
            ? await encryptSecret(ring, JSON.stringify({ API_KEY: "api-key-value" }), secretsSnapshotAad(id))
            : null,
      })
      .where(eq(deployments.id, id));
  }
  return { userId, agentId, deploymentIds: [withSnapshot, withoutSnapshot] };
}

async function keyIdsOf(agentId: string, deploymentIds: string[]) {
  const secrets = await db.select().from(agentSecrets).where(eq(agentSecrets.agentId, agentId)).all();
  const deps = await db.select().from(deployments).where(inArray(deployments.id, deploymentIds)).all();
  return new Set([
    ...secrets.map((s) => envelopeKeyId(s.ciphertext)),
    ...deps.map((d) => envelopeKeyId(d.telemetrySecretCiphertext)),
    ...deps.flatMap((d) => (d.secretsSnapshotCiphertext ? [envelopeKeyId(d.secretsSnapshotCiphertext)] : [])),
  ]);
}

async function expectReadableWith(ring: Keyring, seeded: Awaited<ReturnType<typeof seedUnder>>) {
  expect(await loadAgentSecrets(db, ring, seeded)).toEqual({
    API_KEY: "api-key-value",
    DB_URL: "postgres://db",
  });
  const [withSnapshot, withoutSnapshot] = seeded.deploymentIds as [string, string];
  const deps = await db.select().from(deployments).where(inArray(deployments.id, seeded.deploymentIds)).all();
  const byId = new Map(deps.map((d) => [d.id, d]));
  expect(
    await decryptSecretText(ring, byId.get(withSnapshot)!.telemetrySecretCiphertext, telemetrySecretAad(withSnapshot)),
  ).toBe(`telemetry-${withSnapshot}`);
  expect(
    await decryptSecretText(ring, byId.get(withSnapshot)!.secretsSnapshotCiphertext!, secretsSnapshotAad(withSnapshot)),
  ).toBe(JSON.stringify({ API_KEY: "api-key-value" }));
  expect(byId.get(withoutSnapshot)!.secretsSnapshotCiphertext).toBeNull();
}

describe("key rotation", () => {
  it("re-encrypts everything under the old key to the new one, readable after the old key is removed", async () => {
    const oldKey = randomKey();
    const newKey = randomKey();
    const oldRing = await parseKeyring(oldKey);
    const newOnly = await parseKeyring(newKey);
    const seeded = await seedUnder(oldRing);
    expect(await keyIdsOf(seeded.agentId, seeded.deploymentIds)).toEqual(new Set([oldRing.current.id]));

    // Without the old key the data is unreadable, with an explicit error.
    await expect(loadAgentSecrets(db, newOnly, seeded)).rejects.toThrow(`unknown key id ${oldRing.current.id}`);

    // Step 1: new key current, old key previous. Old data is readable before any re-encryption.
    const rotating = envWith({ SECRETS_ENCRYPTION_KEY: newKey, SECRETS_ENCRYPTION_PREVIOUS_KEYS: oldKey });
    const bothRing = await parseKeyring(newKey, oldKey);
    await expectReadableWith(bothRing, seeded);

    // Step 2: re-encrypt (small pages, so paging is exercised; rows of other tests, under keys
    // this ring lacks, are not selected at all).
    const report = await reencryptFromEnv(rotating, { batchSize: 2, maxBatches: 100_000 });
    expect(report.currentKeyId).toBe(newOnly.current.id);
    expect(report.columns["agent_secrets.ciphertext"].reencrypted).toBeGreaterThanOrEqual(2);
    expect(report.columns["deployments.telemetry_secret_ciphertext"].reencrypted).toBeGreaterThanOrEqual(2);
    expect(report.columns["deployments.secrets_snapshot_ciphertext"].reencrypted).toBeGreaterThanOrEqual(1);
    for (const column of Object.values(report.columns)) expect(column.exhausted).toBe(true);
    expect(report.failures).toEqual([]);
    expect(report.complete).toBe(true);
    expect(await keyIdsOf(seeded.agentId, seeded.deploymentIds)).toEqual(new Set([newOnly.current.id]));

    // Step 3: the previous key is removed; everything still reads.
    await expectReadableWith(newOnly, seeded);

    // A second run finds nothing under the old key.
    const again = await reencryptFromEnv(rotating, { batchSize: 50, maxBatches: 100_000 });
    for (const column of Object.values(again.columns)) expect(column.scanned).toBe(0);
  });

  it("reports a tampered row under the old key, leaves rows under unconfigured keys alone, and does the rest", async () => {
    const oldKey = randomKey();
    const newKey = randomKey();
    const oldRing = await parseKeyring(oldKey);
    const seeded = await seedUnder(oldRing);
    const stranger = await seedUnder(await parseKeyring(randomKey()));
    const [apiKey] = await db
      .select()
      .from(agentSecrets)
      .where(and(eq(agentSecrets.agentId, seeded.agentId), eq(agentSecrets.name, "API_KEY")))
      .all();
    // The DB_URL ciphertext moved into API_KEY's row: sealed under the old key, wrong row.
    const [dbUrl] = await db
      .select()
      .from(agentSecrets)
      .where(and(eq(agentSecrets.agentId, seeded.agentId), eq(agentSecrets.name, "DB_URL")))
      .all();
    await db.update(agentSecrets).set({ ciphertext: dbUrl!.ciphertext }).where(eq(agentSecrets.id, apiKey!.id));
    const strangerBefore = await db.select().from(agentSecrets).where(eq(agentSecrets.agentId, stranger.agentId)).all();

    const report = await reencryptStaleSecrets(
      { db, keyring: await parseKeyring(newKey, oldKey) },
      {
        batchSize: 1,
        maxBatches: 100_000,
      },
    );
    expect(report.complete).toBe(false);
    expect(report.failures).toEqual([
      {
        column: "agent_secrets.ciphertext",
        rowId: apiKey!.id,
        reason: "secret failed to decrypt (wrong key, row or tampered ciphertext)",
      },
    ]);
    const after = await db.select().from(agentSecrets).where(eq(agentSecrets.agentId, seeded.agentId)).all();
    const byName = new Map(after.map((r) => [r.name, r]));
    expect(byName.get("API_KEY")!.ciphertext).toBe(dbUrl!.ciphertext);
    expect(envelopeKeyId(byName.get("DB_URL")!.ciphertext)).toBe((await parseKeyring(newKey)).current.id);
    // Rows under a key the ring does not hold are never selected, so never reported or changed.
    expect(await db.select().from(agentSecrets).where(eq(agentSecrets.agentId, stranger.agentId)).all()).toEqual(
      strangerBefore,
    );
  });

  it("does nothing (and reads nothing) while no previous key is configured", async () => {
    const report = await reencryptFromEnv(envWith({ SECRETS_ENCRYPTION_KEY: randomKey() }));
    expect(report.skipped).toBe("no previous keys configured");
    expect(report.complete).toBe(true);
  });

  it("never overwrites a value written concurrently under the new key", async () => {
    const oldKey = randomKey();
    const newKey = randomKey();
    const seeded = await seedUnder(await parseKeyring(oldKey));
    const bothRing = await parseKeyring(newKey, oldKey);
    // A db whose batch lets a user replace API_KEY between the re-encryption's read and write.
    let raced = false;
    const racingDb = new Proxy(db, {
      get(target, prop, receiver) {
        if (prop !== "batch") return Reflect.get(target, prop, receiver);
        return async (items: Parameters<Db["batch"]>[0]) => {
          if (!raced) {
            raced = true;
            await putAgentSecret(
              { db, userId: seeded.userId, keyring: bothRing },
              { agentId: seeded.agentId, name: "API_KEY", value: "rotated-by-user" },
            );
          }
          return target.batch(items);
        };
      },
    });
    const report = await reencryptStaleSecrets(
      { db: racingDb, keyring: bothRing },
      { batchSize: 100, maxBatches: 100_000 },
    );
    expect(raced).toBe(true);
    expect(report.columns["agent_secrets.ciphertext"].conflicts).toBeGreaterThanOrEqual(1);
    const secrets = await loadAgentSecrets(db, await parseKeyring(newKey), seeded);
    expect(secrets).toEqual({ API_KEY: "rotated-by-user", DB_URL: "postgres://db" });
  });

  it("runs from the cron handler", async () => {
    const oldKey = randomKey();
    const newKey = randomKey();
    const seeded = await seedUnder(await parseKeyring(oldKey));
    const rotating = envWith({ SECRETS_ENCRYPTION_KEY: newKey, SECRETS_ENCRYPTION_PREVIOUS_KEYS: oldKey });
    const newOnly = await parseKeyring(newKey);
    // The cron handles up to 500 rows per column per run; repeat until our rows are done.
    for (let run = 0; run < 20; run++) {
      await worker.scheduled(createScheduledController({ cron: "*/5 * * * *" }), rotating, createExecutionContext());
      const ids = await keyIdsOf(seeded.agentId, seeded.deploymentIds);
      if (ids.size === 1 && ids.has(newOnly.current.id)) break;
    }
    expect(await keyIdsOf(seeded.agentId, seeded.deploymentIds)).toEqual(new Set([newOnly.current.id]));
    await expectReadableWith(newOnly, seeded);
  });
});
