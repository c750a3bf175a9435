// The verified-token cache in src/auth/jwt.ts saves the signature check on repeated requests and
// must never let a token through that verification would refuse.
import { env } from "cloudflare:workers";
import { decodeJwt } from "jose";
import { describe, expect, it } from "vitest";
import { CLOCK_TOLERANCE_SECONDS, verifyAccessToken } from "../src/auth/jwt";
import { getConfig } from "../src/env";
import { ApiError } from "../src/lib/errors";
import { mintToken } from "./helpers/auth";

async function auth() {
  return (await getConfig(env)).auth;
}

async function refusal(work: Promise<unknown>): Promise<string> {
  try {
    await work;
  } catch (err) {
    if (err instanceof ApiError) return err.code;
    throw err;
  }
  return "accepted";
}

describe("verified-token cache", () => {
  it("refuses a cached token once it has expired", async () => {
    const subject = `cache-exp-${crypto.randomUUID()}`;
    const token = await mintToken(subject, { expiresIn: 30 });
    const exp = decodeJwt(token).exp as number;
    const config = await auth();
    expect(await verifyAccessToken(token, config)).toEqual({ subject });
    expect(await verifyAccessToken(token, config, { now: Date.now() + 1000 })).toEqual({ subject });
    const afterExpiry = (exp + CLOCK_TOLERANCE_SECONDS + 1) * 1000;
    expect(await refusal(verifyAccessToken(token, config, { now: afterExpiry }))).toBe("invalid_token");
  });

  it("gives a cached token's subject to no token that differs from it in any byte", async () => {
    const token = await mintToken(`cache-bytes-${crypto.randomUUID()}`);
    const config = await auth();
    await verifyAccessToken(token, config);
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const flippedSignature = `${header}.${payload}.${signature.startsWith("A") ? "B" : "A"}${signature.slice(1)}`;
    const otherToken = await mintToken(`cache-other-${crypto.randomUUID()}`);
    const swappedPayload = `${header}.${otherToken.split(".")[1]}.${signature}`;
    for (const forged of [flippedSignature, swappedPayload, `${token}x`, token.slice(0, -1)]) {
      expect(await refusal(verifyAccessToken(forged, config))).toBe("invalid_token");
    }
    expect(await refusal(verifyAccessToken(token, config))).toBe("accepted");
  });

  it("verifies a token again under another configuration (issuer, audience or authorized parties)", async () => {
    const token = await mintToken(`cache-config-${crypto.randomUUID()}`);
    const config = await auth();
    await verifyAccessToken(token, config);
    expect(await refusal(verifyAccessToken(token, { ...config, issuer: "https://another-issuer.test" }))).toBe(
      "invalid_token",
    );
    expect(await refusal(verifyAccessToken(token, { ...config, audience: "another-audience" }))).toBe("invalid_token");
    expect(
      await refusal(verifyAccessToken(token, { ...config, authorizedParties: ["https://app.example.test"] })),
    ).toBe("invalid_token");
  });

  it("does not remember a refusal: a token refused before its nbf is accepted once it is valid", async () => {
    const subject = `cache-nbf-${crypto.randomUUID()}`;
    const token = await mintToken(subject, { notBefore: 120, expiresIn: 600 });
    const config = await auth();
    expect(await refusal(verifyAccessToken(token, config))).toBe("invalid_token");
    const nbf = decodeJwt(token).nbf as number;
    expect(await verifyAccessToken(token, config, { now: nbf * 1000 })).toEqual({ subject });
  });
});
