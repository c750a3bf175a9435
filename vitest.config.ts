// Tests run inside workerd through Cloudflare's Vitest integration, against the local
// wrangler.toml bindings (real D1, queues and Worker Loader). Signing keys for test tokens are
// generated here, once per run, and handed to the worker as bindings.
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { build } from "esbuild";
import { defineConfig } from "vitest/config";
import { newSigningKey } from "./scripts/lib/tokens.ts";

async function testKeys() {
  const keys = [await newSigningKey("test-rsa", "RS256"), await newSigningKey("test-ec", "ES256")];
  return {
    publicJwks: JSON.stringify({ keys: keys.map((k) => k.publicJwk) }),
    privateJwks: JSON.stringify({ keys: keys.map((k) => k.privateJwk) }),
  };
}

/**
 * The agent host Worker (src/agent-host/, DISPATCH_MODE=host), bundled for miniflare: wrangler.toml's
 * AGENT_HOST binding names it, and the provider contract suite runs the host mechanism against it
 * (a real RPC hop between two Workers; the watchdog and the second process are the e2e suite's).
 */
async function agentHostBundle(): Promise<string> {
  const outfile = "./.wrangler/tmp/vitest-agent-host.mjs";
  await build({
    entryPoints: ["./src/agent-host/index.ts"],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2023",
    external: ["cloudflare:*", "node:*"],
    outfile,
    logLevel: "warning",
  });
  return outfile;
}

export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
  const keys = await testKeys();
  const agentHost = await agentHostBundle();
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            TEST_SIGNING_JWKS: keys.privateJwks,
            AUTH_JWKS: keys.publicJwks,
            AUTH_ISSUER: "https://issuer.test",
            SECRETS_ENCRYPTION_KEY: btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))),
          },
          // A recording stand-in for TelemetrySink, handed to the template under test as TELEMETRY.
          serviceBindings: { FAKE_TELEMETRY: { name: "fake-telemetry", entrypoint: "FakeTelemetry" } },
          workers: [
            {
              name: "fake-telemetry",
              modules: true,
              scriptPath: "./user-worker-template/test/fake-telemetry.mjs",
              compatibilityDate: "2026-08-01",
            },
            {
              name: "webhost-agent-host",
              modules: true,
              scriptPath: agentHost,
              compatibilityDate: "2026-08-01",
              compatibilityFlags: ["nodejs_compat"],
              workerLoaders: { LOADER: {} },
              // The test runner is the gateway here: its HostBridge entrypoint.
              serviceBindings: { GATEWAY: { name: "vitest-plugin-runner-", entrypoint: "HostBridge" } },
            },
          ],
        },
      }),
    ],
    test: {
      include: ["tests/**/*.test.ts", "user-worker-template/**/*.test.ts"],
      exclude: ["tests/e2e/**", "tests/browser/**"],
      setupFiles: ["./tests/setup/apply-migrations.ts"],
      // The fake AWS runs in Node (it starts agents as child processes); the contract suite uses it.
      globalSetup: ["./tests/setup/fake-aws-global.ts"],
      testTimeout: 20_000,
      // Request log lines are printed only for failing tests.
      silent: "passed-only" as const,
    },
  };
});
