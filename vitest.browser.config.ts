// The dashboard in a real browser: headless Debian chromium (/usr/bin/chromium, or CHROMIUM_PATH)
// driven by playwright-core against its own `wrangler dev`, started by the e2e suite's global
// setup (tests/e2e/global-setup.ts). Its own `npm test` step, after the e2e suite.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "node",
    include: ["tests/browser/**/*.test.ts"],
    globalSetup: ["./tests/e2e/global-setup.ts"],
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
