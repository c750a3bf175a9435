// Fails when the production dry-run bundle (scripts/test.mjs builds it into dist/production)
// contains bench code: the /__bench routes live only in src/bench/entry.ts, which only
// `npm run bench` runs, and must never reach a deployed worker.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2] ?? "dist/production";
const files = readdirSync(dir).filter((f) => f.endsWith(".js"));
if (files.length === 0) {
  console.error(`no .js files in ${dir}: run the production dry-run first`);
  process.exit(1);
}
let found = 0;
for (const file of files) {
  const hits = readFileSync(join(dir, file), "utf8").split("__bench").length - 1;
  if (hits > 0) console.error(`${join(dir, file)}: ${hits} occurrence(s) of "__bench"`);
  found += hits;
}
if (found > 0) process.exit(1);
console.log(`${files.join(", ")}: no bench code`);
