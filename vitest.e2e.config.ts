// End-to-end tests: plain Node, real HTTP against `wrangler dev` started once for the whole run
// by tests/e2e/global-setup.ts (a fresh local state, its own signing keys and a free port).
// The Workers-runtime tests are vitest.config.ts; they exclude tests/e2e.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "node",
    include: ["tests/e2e/**/*.test.ts"],
    globalSetup: ["./tests/e2e/global-setup.ts"],
    // One process, one file at a time: every file shares the one dev server.
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
