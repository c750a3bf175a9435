// `npm test`: everything CI checks, in order, stopping at the first failure.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { offlineEnv } from "./lib/offline-env.ts";

const offline = offlineEnv();

const steps = [
  ["built-in template module is up to date", "node", ["scripts/build-template.mjs", "--check"]],
  ["dashboard assets are up to date", "node", ["scripts/build-dashboard.mjs", "--check"]],
  ["typed API client is what docs/openapi.json generates", "node", ["scripts/generate-client.mjs", "--check"]],
  ["typecheck", "tsc", ["--noEmit", "-p", "tsconfig.json"]],
  ["typecheck (e2e suite and the typed client's flow, Node)", "tsc", ["--noEmit", "-p", "tests/e2e/tsconfig.json"]],
  ["lint", "biome", ["check", "."]],
  ["layer rules (docs/architecture.md)", "depcruise", ["src", "--config", ".dependency-cruiser.cjs"]],
  ["links and paths in the docs resolve", "node", ["scripts/check-doc-links.mjs"]],
  ["migrations are up to date with the schema", "node", ["scripts/check-migrations.mjs"]],
  ["tests (Workers runtime)", "vitest", ["run"]],
  [
    "CLI unit tests (Node's test runner)",
    "node",
    [
      "--test",
      ...readdirSync("cli/test")
        .filter((f) => f.endsWith(".test.mjs"))
        .map((f) => `cli/test/${f}`),
    ],
  ],
  ["end-to-end tests (wrangler dev over HTTP)", "vitest", ["run", "-c", "vitest.e2e.config.ts"]],
  [
    "dashboard in a real browser (headless chromium against wrangler dev)",
    "vitest",
    ["run", "-c", "vitest.browser.config.ts"],
  ],
  [
    "namespace mechanism vs the fake Cloudflare API (wrangler dev --env production)",
    "node",
    ["scripts/e2e-namespace-local.mjs"],
  ],
  ["production dry-run", "wrangler", ["deploy", "--dry-run", "--env", "production", "--outdir", "dist/production"]],
  ["production bundle has no bench code", "node", ["scripts/check-production-bundle.mjs", "dist/production"]],
];

for (const [label, cmd, args] of steps) {
  console.log(`\n▶ ${label}: ${cmd} ${args.join(" ")}`);
  const started = Date.now();
  const result = spawnSync(cmd, args, { stdio: "inherit", env: offline });
  if (result.status !== 0) {
    console.error(`✗ ${label} failed (exit ${result.status ?? result.signal})`);
    process.exit(result.status ?? 1);
  }
  console.log(`✓ ${label} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
