import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { agentSecretAad } from "../src/crypto/aad";
import { fromBase64, toBase64Url } from "../src/crypto/encoding";
import { DecryptionError, decryptSecretText, encryptSecret, envelopeKeyId } from "../src/crypto/envelope";
import { parseKeyring } from "../src/crypto/keys";
import { agentSecrets } from "../src/db/schema";
import { getConfig } from "../src/env";
import { loadAgentSecrets, putAgentSecret } from "../src/services/secrets/secrets";
import { randomKey } from "./helpers/env-override";
import { db, insertUserAndAgent } from "./helpers/fixtures";

async function keyring() {
  return (await getConfig(env)).keyring;
}

/** Flips one bit of the byte at `index` of an envelope part (2 = IV, 3 = ciphertext+tag). */
function flipBit(envelope: string, part: 2 | 3, index: number): string {
  const parts = envelope.split(".");
  const bytes = fromBase64(parts[part]!);
  bytes[index] = (bytes[index] ?? 0) ^ 0x01;
  parts[part] = toBase64Url(bytes);
  return parts.join(".");
}

describe("secret envelopes", () => {
  it("does not decrypt a ciphertext copied into another secret's row", async () => {
    const ring = await keyring();
    const { userId, agentId } = await insertUserAndAgent();
    const other = await insertUserAndAgent();
    await putAgentSecret({ db, userId, keyring: ring }, { agentId, name: "ALPHA", value: "alpha-value" });
    await putAgentSecret({ db, userId, keyring: ring }, { agentId, name: "BETA", value: "beta-value" });
    await putAgentSecret(
      { db, userId: other.userId, keyring: ring },
      { agentId: other.agentId, name: "ALPHA", value: "other-value" },
    );
    expect(await loadAgentSecrets(db, ring, { userId, agentId })).toEqual({ ALPHA: "alpha-value", BETA: "beta-value" });

    const alpha = await db
      .select()
      .from(agentSecrets)
      .where(and(eq(agentSecrets.agentId, agentId), eq(agentSecrets.name, "ALPHA")))
      .get();
    // Same agent, other name.
    await db
      .update(agentSecrets)
      .set({ ciphertext: alpha!.ciphertext })
      .where(and(eq(agentSecrets.agentId, agentId), eq(agentSecrets.name, "BETA")));
    const err = await loadAgentSecrets(db, ring, { userId, agentId }).catch((e) => e);
    expect(err).toBeInstanceOf(DecryptionError);
    expect(err.message).toMatch(/agent secret BETA could not be decrypted/);
    expect(err.message).not.toContain("alpha-value");
    // Same name, other agent.
    await db.update(agentSecrets).set({ ciphertext: alpha!.ciphertext }).where(eq(agentSecrets.agentId, other.agentId));
    await expect(loadAgentSecrets(db, ring, other)).rejects.toThrow(/ALPHA could not be decrypted/);
  });

  it("rejects a ciphertext or IV with one flipped bit", async () => {
    const ring = await keyring();
    const aad = agentSecretAad("agt_x", "NAME");
    const envelope = await encryptSecret(ring, "top secret", aad);
    expect(await decryptSecretText(ring, envelope, aad)).toBe("top secret");
    for (const index of [0, 5, 10 + 16 - 1]) {
      await expect(decryptSecretText(ring, flipBit(envelope, 3, index), aad)).rejects.toThrow(DecryptionError);
    }
    await expect(decryptSecretText(ring, flipBit(envelope, 2, 0), aad)).rejects.toThrow(/failed to decrypt/);
    await expect(decryptSecretText(ring, envelope, agentSecretAad("agt_x", "NAMF"))).rejects.toThrow(DecryptionError);
  });

  it("names an unknown key id explicitly", async () => {
    const ring = await keyring();
    const aad = "test:aad";
    const foreign = await parseKeyring(randomKey());
    const envelope = await encryptSecret(foreign, "v", aad);
    const err = await decryptSecretText(ring, envelope, aad).catch((e) => e);
    expect(err).toBeInstanceOf(DecryptionError);
    expect(err.message).toBe(`secret was encrypted under unknown key id ${foreign.current.id}`);
    await expect(decryptSecretText(ring, "v2.x.y.z", aad)).rejects.toThrow(/malformed/);
    await expect(decryptSecretText(ring, "not an envelope", aad)).rejects.toThrow(/malformed/);
  });

  it("never repeats an IV", async () => {
    const ring = await keyring();
    const ivs = new Set<string>();
    const envelopes = new Set<string>();
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const envelope = await encryptSecret(ring, "same plaintext", "same:aad");
      expect(envelopeKeyId(envelope)).toBe(ring.current.id);
      ivs.add(envelope.split(".")[2]!);
      envelopes.add(envelope);
    }
    expect(ivs.size).toBe(n);
    expect(envelopes.size).toBe(n);
    for (const iv of ivs) expect(fromBase64(iv)).toHaveLength(12);
  });
});
