// Fails when src/db/schema has changes that no migration in migrations/ captures, by asking
// drizzle-kit to generate into a scratch folder seeded with the committed journal.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const scratch = mkdtempSync(join(tmpdir(), "migrations-check-"));
try {
  cpSync("migrations", scratch, { recursive: true });
  const before = readdirSync(scratch).filter((f) => f.endsWith(".sql")).length;
  const run = spawnSync(
    "drizzle-kit",
    ["generate", "--dialect", "sqlite", "--schema", "./src/db/schema/index.ts", "--out", scratch],
    { encoding: "utf8" },
  );
  if (run.status !== 0) {
    console.error(run.stdout, run.stderr);
    process.exit(1);
  }
  const after = readdirSync(scratch).filter((f) => f.endsWith(".sql")).length;
  if (after !== before) {
    console.error("src/db/schema changed without a migration: run `npm run db:generate` and commit migrations/.");
    process.exit(1);
  }
  console.log("migrations match the schema");
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
