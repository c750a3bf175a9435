// Starts one `wrangler dev` for the whole e2e run with a signing key pair made here: the public
// half goes to the server as AUTH_JWKS, the private half to the tests (through `inject`) so
// they can mint tokens for as many users as they like. The server's output goes to
// .wrangler/e2e/server.log (DEV_SERVER_ECHO=1 also prints it as it arrives).
import type { TestProject } from "vitest/node";
import { type DevServer, PROJECT_ROOT, startDevServer } from "../../scripts/lib/dev-server.ts";
import { newSigningKey } from "../../scripts/lib/tokens.ts";
import { E2E_KID, SESSION_IDLE_SECONDS } from "./context.ts";
import { FAKE_PROVIDER_KEY, startFakeProvider } from "./fake-provider.ts";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const { publicJwk, privateJwk } = await newSigningKey(E2E_KID);
  const issuer = `https://issuer.e2e.test/${crypto.randomUUID()}`;
  // The egress tests' model provider: the gateway forwards models.webhost.internal/openai/… to it.
  const provider = await startFakeProvider();
  const started = performance.now();
  const server: DevServer = await startDevServer({
    vars: {
      AUTH_ISSUER: issuer,
      AUTH_JWKS: JSON.stringify({ keys: [publicJwk] }),
      MODEL_PROVIDERS: JSON.stringify({ openai: { baseUrl: provider.baseUrl, keySecret: "OPENAI_API_KEY" } }),
      OPENAI_API_KEY: FAKE_PROVIDER_KEY,
      // Small enough for the egress test to exhaust (its two model calls use 23 tokens), and a
      // session idle TTL short enough for the sessions test to watch one expire.
      TIER_LIMITS: JSON.stringify({ free: { modelTokensPerPeriod: 20, sessionIdleSeconds: SESSION_IDLE_SECONDS } }),
      // Webhook retries after 1 s, 2 s, 4 s … so the retry test takes seconds (webhooks.e2e.test.ts).
      WEBHOOK_RETRY_BASE_SECONDS: "1",
    },
    logFile: `${PROJECT_ROOT}/.wrangler/e2e/server.log`,
    // E2E_AGENT_HOST=1: agents run in the agent host (DISPATCH_MODE=host, as under `npm run dev`),
    // so the whole suite checks that telemetry, egress, logs and streams work through it.
    agentHost: process.env.E2E_AGENT_HOST === "1",
  });
  console.log(`e2e: wrangler dev ready at ${server.baseUrl} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  project.provide("e2e", {
    baseUrl: server.baseUrl,
    issuer,
    signingJwk: JSON.stringify(privateJwk),
    providerBaseUrl: provider.baseUrl,
  });
  return async () => {
    await server.stop();
    await provider.stop();
  };
}
