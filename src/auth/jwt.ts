// JWT verification: the only module that imports jose. Keys come from AUTH_JWKS (inline) or
// the issuer's JWKS URL (cached per isolate, refetched at most once per cooldown when an
// unknown `kid` shows up). `jku`/`x5u` headers are never followed.
import { createLocalJWKSet, createRemoteJWKSet, errors, type JWTVerifyGetKey, jwtVerify } from "jose";
import { ApiError } from "../lib/errors";
import { IsolateCache } from "../lib/isolate-cache";

export const ALLOWED_ALGORITHMS = ["RS256", "ES256"];
export const CLOCK_TOLERANCE_SECONDS = 5;
const JWKS_TIMEOUT_MS = 3000;
const JWKS_COOLDOWN_MS = 30_000;
const JWKS_MAX_AGE_MS = 10 * 60_000;

/** Where tokens come from and whom they must be for (parsed from AUTH_* by src/env.ts). */
export type AuthConfig = {
  issuer: string;
  audience?: string;
  /** When set, the token's `azp` (authorized party) must be one of these, exactly. */
  authorizedParties?: readonly string[];
  /** Inline JWKS JSON (local dev and tests); otherwise keys are fetched from jwksUrl. */
  jwks?: string;
  jwksUrl: string;
};

export type VerifiedToken = { subject: string };

// Key sets per isolate, keyed by the inline JSON or the URL they were built from.
const keySets = new Map<string, JWTVerifyGetKey>();

function keySetFor(auth: AuthConfig): JWTVerifyGetKey {
  const cacheKey = auth.jwks ? `inline:${auth.jwks}` : `url:${auth.jwksUrl}`;
  let keySet = keySets.get(cacheKey);
  if (!keySet) {
    if (auth.jwks) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(auth.jwks);
      } catch {
        throw new ApiError("configuration_error", "AUTH_JWKS is not valid JSON");
      }
      keySet = createLocalJWKSet(parsed as Parameters<typeof createLocalJWKSet>[0]);
    } else {
      keySet = withUnavailableAsError(
        createRemoteJWKSet(new URL(auth.jwksUrl), {
          timeoutDuration: JWKS_TIMEOUT_MS,
          cooldownDuration: JWKS_COOLDOWN_MS,
          cacheMaxAge: JWKS_MAX_AGE_MS,
        }),
      );
    }
    keySets.set(cacheKey, keySet);
  }
  return keySet;
}

/** Marks a failure to obtain keys (fetch error, timeout, garbage JWKS) apart from a bad token. */
class KeySetUnavailable extends Error {
  override name = "KeySetUnavailable";
}

function withUnavailableAsError(remote: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      // A well-formed key set without the token's key is the token's fault; anything else is ours.
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) throw err;
      throw new KeySetUnavailable((err as Error)?.message ?? "unavailable");
    }
  };
}

/**
 * Tokens this isolate has verified, so a client sending the same token on every call costs one
 * signature check per token and minute instead of one per request. The rules:
 * - only a token that passed every check is remembered; a failure is never cached, and a token
 *   that differs in any byte (another signature, header or claim) is another key and is verified;
 * - an entry is trusted until the token's `exp` (without the clock tolerance jose would add) and
 *   at most VERIFIED_TOKEN_MAX_AGE_MS after it was verified, so a key removed from the issuer's
 *   JWKS stops its tokens within a minute (no later than the JWKS cache itself would);
 * - entries are per auth configuration (issuer, audience, authorized parties, key source): a token verified under
 *   one configuration is re-verified under another;
 * - at most MAX_VERIFIED_TOKENS entries; beyond that the oldest is dropped;
 * - concurrent requests with the same unverified token share one verification.
 */
export const VERIFIED_TOKEN_MAX_AGE_MS = 60_000;
const MAX_VERIFIED_TOKENS = 10_000;

type Verified = { subject: string; trustedForMs: number };
// `${configId} ${token}` -> the subject, trusted up to a minute after verifying (the rules above).
const verifiedTokens = new IsolateCache<string, Verified>({
  maxEntries: MAX_VERIFIED_TOKENS,
  ttlMs: VERIFIED_TOKEN_MAX_AGE_MS,
  ttlOf: (verified) => verified.trustedForMs,
});

// A short id per distinct auth configuration (issuer, audience, authorized parties, key source), so cache keys do not
// carry an inline JWKS. Configs are parsed once per env (see env.ts): an isolate sees one or a few.
const configIdByContent = new Map<string, string>();
const configIds = new WeakMap<AuthConfig, string>();

function configIdOf(auth: AuthConfig): string {
  let id = configIds.get(auth);
  if (id === undefined) {
    const content = JSON.stringify([
      auth.issuer,
      auth.audience ?? null,
      auth.authorizedParties ?? null,
      auth.jwks ?? null,
      auth.jwksUrl,
    ]);
    id = configIdByContent.get(content);
    if (id === undefined) {
      id = `c${configIdByContent.size}`;
      configIdByContent.set(content, id);
    }
    configIds.set(auth, id);
  }
  return id;
}

/** Verifies a bearer token; every failure is an ApiError (401, or 503 when keys are unreachable). */
export async function verifyAccessToken(
  token: string,
  auth: AuthConfig,
  opts: { now?: number; waitUntil?: (promise: Promise<unknown>) => void } = {},
): Promise<VerifiedToken> {
  const now = opts.now ?? Date.now();
  const key = `${configIdOf(auth)} ${token}`;
  // waitUntil: a verification shared by concurrent requests finishes even if its starter goes away.
  const { subject } = await verifiedTokens.get(key, () => verifyUncached(token, auth, now), {
    now,
    waitUntil: opts.waitUntil,
  });
  return { subject };
}

async function verifyUncached(token: string, auth: AuthConfig, now: number): Promise<Verified> {
  const keySet = keySetFor(auth);
  try {
    const { payload } = await jwtVerify(token, keySet, {
      issuer: auth.issuer,
      audience: auth.audience,
      algorithms: ALLOWED_ALGORITHMS,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ["exp", "sub"],
      currentDate: new Date(now),
    });
    if (typeof payload.sub !== "string" || payload.sub.length === 0 || payload.sub.length > 255) {
      throw new ApiError("invalid_token", "token subject is missing or invalid");
    }
    if (auth.authorizedParties && !(typeof payload.azp === "string" && auth.authorizedParties.includes(payload.azp))) {
      throw new ApiError("invalid_token", "token claim check failed: azp");
    }
    // requiredClaims guarantees a numeric exp. Trust ends at exp itself, without the tolerance.
    return { subject: payload.sub, trustedForMs: (payload.exp as number) * 1000 - now };
  } catch (err) {
    throw toAuthError(err);
  }
}

function toAuthError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof KeySetUnavailable) {
    return new ApiError("auth_unavailable", "the token issuer's signing keys are unavailable; retry shortly", {
      headers: { "retry-after": "5" },
    });
  }
  if (err instanceof errors.JWTExpired) return new ApiError("invalid_token", "token has expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new ApiError("invalid_token", `token claim check failed: ${err.claim}`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return new ApiError("invalid_token", "token algorithm is not allowed");
  if (err instanceof errors.JWKSNoMatchingKey)
    return new ApiError("invalid_token", "token was not signed by a known key");
  return new ApiError("invalid_token", "token is invalid");
}
