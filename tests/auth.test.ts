import { env } from "cloudflare:workers";
import { exportJWK, generateKeyPair, importJWK, SignJWT } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { callWithEnv } from "./helpers/app";
import { mintToken } from "./helpers/auth";
import { call, expectProblem } from "./helpers/http";

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function b64url(text: string): string {
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function unsignedToken(header: object, payload: object, signature = ""): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${signature}`;
}

function basePayload(overrides: object = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { sub: "attacker", iss: env.AUTH_ISSUER, iat: now, exp: now + 600, ...overrides };
}

async function expectUnauthorized(res: Response, code = "invalid_token") {
  const problem = await expectProblem(res, 401, code);
  // No key material or expected values leak into the answer.
  expect(JSON.stringify(problem)).not.toMatch(/"kty"|"n":|BEGIN|-----/);
  return problem;
}

describe("authentication", () => {
  it("accepts valid RS256 and ES256 tokens and creates the user on first sight", async () => {
    for (const alg of ["RS256", "ES256"] as const) {
      const token = await mintToken(`valid-${alg}-${crypto.randomUUID()}`, { alg });
      const res = await call("GET", "/v1/agents", { headers: bearer(token) });
      expect(res.status).toBe(200);
    }
  });

  it("refuses a request with no Authorization header or one that is not Bearer", async () => {
    await expectUnauthorized(await call("GET", "/v1/agents"), "unauthenticated");
    await expectUnauthorized(
      await call("GET", "/v1/agents", { headers: { authorization: "Basic dXNlcjpwYXNz" } }),
      "unauthenticated",
    );
    await expectUnauthorized(
      await call("GET", "/v1/agents", { headers: { authorization: "Bearer" } }),
      "unauthenticated",
    );
  });

  it("refuses malformed tokens and bad signatures", async () => {
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer("not.a.jwt") }));
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer("abc") }));
    const good = await mintToken("sig-test");
    const [h, p, s] = good.split(".") as [string, string, string];
    const flipped = `${h}.${p}.${s.startsWith("A") ? `B${s.slice(1)}` : `A${s.slice(1)}`}`;
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(flipped) }));
    const otherPayload = b64url(JSON.stringify(basePayload({ sub: "someone-else" })));
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(`${h}.${otherPayload}.${s}`) }));
  });

  it("refuses expired tokens, tokens not yet valid, and tokens without exp", async () => {
    await expectUnauthorized(
      await call("GET", "/v1/agents", { headers: bearer(await mintToken("exp", { expiresIn: -60 })) }),
    );
    await expectUnauthorized(
      await call("GET", "/v1/agents", { headers: bearer(await mintToken("nbf", { notBefore: 120 })) }),
    );
    await expectUnauthorized(
      await call("GET", "/v1/agents", { headers: bearer(await mintToken("noexp", { omitExp: true })) }),
    );
  });

  it("tolerates a few seconds of clock skew and no more", async () => {
    const inside = await mintToken("skew-in", { expiresIn: -2 });
    expect((await call("GET", "/v1/agents", { headers: bearer(inside) })).status).toBe(200);
    const insideNbf = await mintToken("skew-nbf-in", { notBefore: 2 });
    expect((await call("GET", "/v1/agents", { headers: bearer(insideNbf) })).status).toBe(200);
    const outside = await mintToken("skew-out", { expiresIn: -30 });
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(outside) }));
  });

  it("refuses the wrong issuer, and the wrong audience when AUTH_AUDIENCE is set", async () => {
    const wrongIssuer = await mintToken("iss", { issuer: "https://evil.test" });
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(wrongIssuer) }));

    const withAudience = { AUTH_AUDIENCE: "webhost-api" };
    const wrongAud = await mintToken("aud", { audience: "someone-else" });
    await expectUnauthorized(await callWithEnv(withAudience, "GET", "/v1/agents", { headers: bearer(wrongAud) }));
    const noAud = await mintToken("aud-none");
    await expectUnauthorized(await callWithEnv(withAudience, "GET", "/v1/agents", { headers: bearer(noAud) }));
    const rightAud = await mintToken("aud-ok", { audience: "webhost-api" });
    expect((await callWithEnv(withAudience, "GET", "/v1/agents", { headers: bearer(rightAud) })).status).toBe(200);
  });

  it("refuses alg none, HS256 signed with the public key's bytes, and algorithms outside the allow-list", async () => {
    const none = unsignedToken({ alg: "none", typ: "JWT" }, basePayload());
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(none) }));

    // Classic key-confusion attack: HMAC keyed with the RSA public key's JWK/PEM-ish bytes.
    const rsaPublic = (JSON.parse(env.AUTH_JWKS ?? "{}") as { keys: Array<{ kid: string }> }).keys.find(
      (k) => k.kid === "test-rsa",
    );
    const secret = new TextEncoder().encode(JSON.stringify(rsaPublic));
    const hs = await new SignJWT(basePayload()).setProtectedHeader({ alg: "HS256", kid: "test-rsa" }).sign(secret);
    await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(hs) }));

    const privateRsa = (JSON.parse(env.TEST_SIGNING_JWKS) as { keys: Array<Record<string, unknown>> }).keys.find(
      (k) => k.kid === "test-rsa",
    )!;
    const rs384Key = await importJWK({ ...privateRsa, alg: "RS384" }, "RS384");
    const rs384 = await new SignJWT(basePayload()).setProtectedHeader({ alg: "RS384", kid: "test-rsa" }).sign(rs384Key);
    const problem = await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(rs384) }));
    expect(problem.detail).toMatch(/algorithm/);
  });

  it("refuses an unknown kid, and never follows jku or x5u headers", async () => {
    const fetchSpy = vi.spyOn(globalThis, "fetch");
    await expectUnauthorized(
      await call("GET", "/v1/agents", { headers: bearer(await mintToken("kid", { kid: "nobody" })) }),
    );
    const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
    const attackerJwk = await exportJWK(publicKey);
    for (const header of [
      { alg: "ES256", kid: "attacker", jku: "https://evil.test/jwks.json" },
      { alg: "ES256", kid: "attacker", x5u: "https://evil.test/cert.pem" },
      { alg: "ES256", jwk: attackerJwk },
    ]) {
      const token = await new SignJWT(basePayload()).setProtectedHeader(header).sign(privateKey);
      await expectUnauthorized(await call("GET", "/v1/agents", { headers: bearer(token) }));
    }
    expect(fetchSpy).not.toHaveBeenCalled();
    fetchSpy.mockRestore();
  });
});

describe("authentication with a remote JWKS", () => {
  afterEach(() => vi.restoreAllMocks());

  async function remoteSetup() {
    const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
    const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: "remote-1", alg: "ES256", use: "sig" }] };
    const url = `https://idp-${crypto.randomUUID()}.test/.well-known/jwks.json`;
    const overrides = { AUTH_JWKS: "", AUTH_JWKS_URL: url };
    const sign = (kid = "remote-1") =>
      new SignJWT(basePayload({ sub: `remote-${crypto.randomUUID()}` }))
        .setProtectedHeader({ alg: "ES256", kid })
        .sign(privateKey);
    return { jwks, url, overrides, sign };
  }

  it("fetches the issuer's JWKS once and caches it", async () => {
    const { jwks, url, overrides, sign } = await remoteSetup();
    const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input) => {
      expect(String(input instanceof Request ? input.url : input)).toBe(url);
      return Response.json(jwks);
    });
    for (let i = 0; i < 3; i++) {
      expect((await callWithEnv(overrides, "GET", "/v1/agents", { headers: bearer(await sign()) })).status).toBe(200);
    }
    expect(fetchSpy).toHaveBeenCalledTimes(1);
  });

  it("lets a flood of unknown kids cause at most one JWKS refetch per cooldown", async () => {
    const { jwks, overrides, sign } = await remoteSetup();
    const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async () => Response.json(jwks));
    expect((await callWithEnv(overrides, "GET", "/v1/agents", { headers: bearer(await sign()) })).status).toBe(200);
    for (let i = 0; i < 25; i++) {
      await expectUnauthorized(
        await callWithEnv(overrides, "GET", "/v1/agents", { headers: bearer(await sign(`unknown-${i}`)) }),
      );
    }
    expect(fetchSpy.mock.calls.length).toBeLessThanOrEqual(2);
  });

  it("answers 503 when the JWKS endpoint errors or returns garbage, and keeps accepting cached keys", async () => {
    for (const broken of [
      () => new Response("oops", { status: 500 }),
      () => new Response("<html>not json</html>", { status: 200, headers: { "content-type": "text/html" } }),
      () => Response.json({ keys: "nope" }),
      () => {
        throw new TypeError("network connection lost");
      },
    ]) {
      const { overrides, sign } = await remoteSetup();
      vi.spyOn(globalThis, "fetch").mockImplementation(async () => broken());
      const res = await callWithEnv(overrides, "GET", "/v1/agents", { headers: bearer(await sign()) });
      const problem = await expectProblem(res, 503, "auth_unavailable");
      expect(res.headers.get("retry-after")).toBeTruthy();
      expect(problem.detail).not.toMatch(/oops|html/);
      vi.restoreAllMocks();
    }

    const { jwks, overrides, sign } = await remoteSetup();
    let healthy = true;
    vi.spyOn(globalThis, "fetch").mockImplementation(async () =>
      healthy ? Response.json(jwks) : new Response("down", { status: 503 }),
    );
    expect((await callWithEnv(overrides, "GET", "/v1/agents", { headers: bearer(await sign()) })).status).toBe(200);
    healthy = false;
    expect((await callWithEnv(overrides, "GET", "/v1/agents", { headers: bearer(await sign()) })).status).toBe(200);
  });

  it("answers 503 within a few seconds when the JWKS endpoint hangs", async () => {
    const { overrides, sign } = await remoteSetup();
    vi.spyOn(globalThis, "fetch").mockImplementation(
      (_input, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
        }),
    );
    const started = Date.now();
    const res = await callWithEnv(overrides, "GET", "/v1/agents", { headers: bearer(await sign()) });
    await expectProblem(res, 503, "auth_unavailable");
    expect(Date.now() - started).toBeLessThan(6000);
  });
});

describe("configuration", () => {
  it("refuses to serve with a clear problem when AUTH_ISSUER is missing", async () => {
    const res = await callWithEnv({ AUTH_ISSUER: "" }, "GET", "/v1/agents", {
      headers: bearer(await mintToken("cfg")),
    });
    const problem = await expectProblem(res, 500, "configuration_error");
    expect(problem.detail).not.toMatch(/AUTH_ISSUER|SECRETS/);
  });
});

describe("production insists on whom a token is for", () => {
  const get = (overrides: Record<string, unknown>, token: string) =>
    callWithEnv({ ENVIRONMENT: "production", ...overrides }, "GET", "/v1/agents", { headers: bearer(token) });

  it("refuses to serve without AUTH_AUDIENCE or AUTH_AUTHORIZED_PARTIES", async () => {
    const token = await mintToken("prod-none", { audience: "webhost-api", claims: { azp: "https://app.test" } });
    for (const overrides of [{}, { AUTH_AUDIENCE: " ", AUTH_AUTHORIZED_PARTIES: " , " }]) {
      const problem = await expectProblem(await get(overrides, token), 500, "configuration_error");
      expect(problem.detail).not.toMatch(/AUTH_/);
      await expectProblem(
        await callWithEnv({ ENVIRONMENT: "production", ...overrides }, "GET", "/healthz"),
        500,
        "configuration_error",
      );
    }
  });

  it("serves with AUTH_AUDIENCE, checking the audience", async () => {
    const withAudience = { AUTH_AUDIENCE: "webhost-api" };
    expect((await get(withAudience, await mintToken("prod-aud", { audience: "webhost-api" }))).status).toBe(200);
    await expectUnauthorized(await get(withAudience, await mintToken("prod-aud-other", { audience: "other" })));
    await expectUnauthorized(await get(withAudience, await mintToken("prod-aud-none")));
  });

  it("serves with AUTH_AUTHORIZED_PARTIES, accepting only tokens whose azp is listed", async () => {
    const parties = { AUTH_AUTHORIZED_PARTIES: "https://app.example.test, https://admin.example.test" };
    for (const azp of ["https://app.example.test", "https://admin.example.test"]) {
      const token = await mintToken(`prod-azp-${crypto.randomUUID()}`, { claims: { azp } });
      expect((await get(parties, token)).status, azp).toBe(200);
    }
    for (const azp of ["https://evil.example.test", "https://app.example.test/", "", 42]) {
      const token = await mintToken(`prod-azp-bad-${crypto.randomUUID()}`, { claims: { azp } });
      const problem = await expectUnauthorized(await get(parties, token));
      expect(problem.detail).toMatch(/azp/);
    }
    await expectUnauthorized(await get(parties, await mintToken("prod-azp-missing")));
  });

  it("outside production, AUTH_AUTHORIZED_PARTIES is checked when set and nothing is required when not", async () => {
    const parties = { AUTH_AUTHORIZED_PARTIES: "https://app.example.test" };
    const good = await mintToken("dev-azp-ok", { claims: { azp: "https://app.example.test" } });
    const bad = await mintToken("dev-azp-bad", { claims: { azp: "https://evil.example.test" } });
    expect((await callWithEnv(parties, "GET", "/v1/agents", { headers: bearer(good) })).status).toBe(200);
    await expectUnauthorized(await callWithEnv(parties, "GET", "/v1/agents", { headers: bearer(bad) }));
    expect((await call("GET", "/v1/agents", { headers: bearer(bad) })).status).toBe(200);
  });
});
