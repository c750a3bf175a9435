// Mints tokens (scripts/lib/tokens.ts) with the key pairs vitest.config.ts generated for this run.
import { env } from "cloudflare:workers";
import type { JWTPayload } from "jose";
import { type PrivateJwk, type SigningAlg, mintToken as signToken } from "../../scripts/lib/tokens.ts";

function privateKey(alg: SigningAlg): PrivateJwk {
  const keys = (JSON.parse(env.TEST_SIGNING_JWKS) as { keys: PrivateJwk[] }).keys;
  const key = keys.find((k) => k.alg === alg);
  if (!key) throw new Error(`no ${alg} test key`);
  return key;
}

export function mintToken(
  subject: string,
  opts: {
    alg?: SigningAlg;
    issuer?: string;
    audience?: string;
    expiresIn?: number;
    notBefore?: number;
    claims?: JWTPayload;
    kid?: string;
    omitExp?: boolean;
  } = {},
): Promise<string> {
  return signToken(privateKey(opts.alg ?? "ES256"), {
    subject,
    issuer: opts.issuer ?? env.AUTH_ISSUER ?? "",
    expiresIn: opts.omitExp ? null : (opts.expiresIn ?? 600),
    notBefore: opts.notBefore,
    audience: opts.audience,
    claims: opts.claims,
    kid: opts.kid,
  });
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
