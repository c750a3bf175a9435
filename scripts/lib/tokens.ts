// Signs the JWTs the gateway accepts, with a private JWK whose public half the server has as
// AUTH_JWKS. Web-platform code only (jose on WebCrypto), so the Workers-runtime tests, the e2e
// suite and the scripts all mint tokens here.
import { exportJWK, generateKeyPair, importJWK, type JWK, type JWTPayload, SignJWT } from "jose";

export type SigningAlg = "ES256" | "RS256";

/** A private JWK that names its key id and algorithm. */
export type PrivateJwk = JWK & { kid: string; alg: SigningAlg };

export type TokenOptions = {
  subject: string;
  issuer: string;
  /** Seconds from now (default 600); negative for an expired token, null for no `exp` at all. */
  expiresIn?: number | null;
  /** Seconds from now for `nbf`. */
  notBefore?: number;
  audience?: string;
  claims?: JWTPayload;
  /** Header `kid` to send instead of the key's own (e.g. one the server does not know). */
  kid?: string;
};

/** Signs a token with `jwk` (the object, or its JSON text). */
export async function mintToken(jwk: PrivateJwk | string, options: TokenOptions): Promise<string> {
  const key = typeof jwk === "string" ? (JSON.parse(jwk) as PrivateJwk) : jwk;
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT({ ...options.claims })
    .setProtectedHeader({ alg: key.alg, kid: options.kid ?? key.kid, typ: "JWT" })
    .setSubject(options.subject)
    .setIssuer(options.issuer)
    .setIssuedAt(now);
  if (options.expiresIn !== null) jwt = jwt.setExpirationTime(now + (options.expiresIn ?? 600));
  if (options.notBefore !== undefined) jwt = jwt.setNotBefore(now + options.notBefore);
  if (options.audience) jwt = jwt.setAudience(options.audience);
  return jwt.sign(await importJWK(key, key.alg));
}

/** A fresh key pair for one run: the public JWK for the server's AUTH_JWKS, the private one to sign with. */
export async function newSigningKey(
  kid: string,
  alg: SigningAlg = "ES256",
): Promise<{ publicJwk: JWK; privateJwk: PrivateJwk }> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return {
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" },
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
  };
}
