// What the global setup hands every e2e test file (read it with `inject("e2e")`).
export const E2E_KID = "e2e-es256";
/** The free tier's session idle TTL in this run (TIER_LIMITS): long enough for a turn, short enough to wait out. */
export const SESSION_IDLE_SECONDS = 5;

export type E2eContext = {
  /** The dev server, e.g. http://127.0.0.1:41234 */
  baseUrl: string;
  /** AUTH_ISSUER the server was started with. */
  issuer: string;
  /** Private JWK (JSON text) whose public half is the server's AUTH_JWKS. */
  signingJwk: string;
  /** The fake OpenAI-compatible provider (tests/e2e/fake-provider.ts), e.g. http://127.0.0.1:41235 */
  providerBaseUrl: string;
};

declare module "vitest" {
  export interface ProvidedContext {
    e2e: E2eContext;
  }
}
