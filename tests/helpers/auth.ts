// Mints tokens with the key pairs vitest.config.ts generated for this run.
import { env } from "cloudflare:workers";
import { importJWK, type JWTPayload, SignJWT } from "jose";

type PrivateJwk = { kid: string; alg: "RS256" | "ES256" } & Record<string, unknown>;

function privateKey(alg: "RS256" | "ES256"): PrivateJwk {
  const keys = (JSON.parse(env.TEST_SIGNING_JWKS) as { keys: PrivateJwk[] }).keys;
  const key = keys.find((k) => k.alg === alg);
  if (!key) throw new Error(`no ${alg} test key`);
  return key;
}

export async function mintToken(
  subject: string,
  opts: {
    alg?: "RS256" | "ES256";
    issuer?: string;
    audience?: string;
    expiresIn?: number;
    notBefore?: number;
    claims?: JWTPayload;
    kid?: string;
    omitExp?: boolean;
  } = {},
): Promise<string> {
  const alg = opts.alg ?? "ES256";
  const jwk = privateKey(alg);
  const key = await importJWK(jwk, alg);
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT({ ...opts.claims })
    .setProtectedHeader({ alg, kid: opts.kid ?? jwk.kid, typ: "JWT" })
    .setSubject(subject)
    .setIssuer(opts.issuer ?? env.AUTH_ISSUER ?? "")
    .setIssuedAt(now);
  if (!opts.omitExp) jwt = jwt.setExpirationTime(now + (opts.expiresIn ?? 600));
  if (opts.notBefore !== undefined) jwt = jwt.setNotBefore(now + opts.notBefore);
  if (opts.audience) jwt = jwt.setAudience(opts.audience);
  return jwt.sign(key);
}

let counter = 0;
/** A fresh user per call, so tests never see each other's rows. */
export async function newUser(
  label = "user",
): Promise<{ subject: string; token: string; headers: Record<string, string> }> {
  const subject = `${label}-${Date.now()}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
  const token = await mintToken(subject);
  return { subject, token, headers: { authorization: `Bearer ${token}` } };
}
