// `npm run set-tier -- <userId | auth subject> <free|pro|enterprise> [--remote [--env production]] [--print-sql]`
// Moves a user to a tier: cancels their active subscription, inserts the new one and writes an
// audit_log entry, in one `wrangler d1 execute` call. Local database by default; `--remote`
// (with `--env production`) runs the same statements on the deployed D1. `--print-sql` prints
// the statements instead of running them. Running gateways pick the change up within 30 s
// (the per-isolate tier cache).
import { spawnSync } from "node:child_process";
import { offlineEnv } from "./lib/offline-env.ts";
import { lookupUserSql, TIERS, tierChangeStatements } from "./lib/tier-sql.ts";

const usage =
  "usage: npm run set-tier -- <userId | auth subject> <free|pro|enterprise> [--remote] [--env <name>] [--print-sql]";
const args = process.argv.slice(2);
const positional = [];
const target = ["--local"];
let printSql = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--remote") target[0] = "--remote";
  else if (a === "--env") {
    if (!args[i + 1]) fail(usage);
    target.push("--env", args[++i]);
  } else if (a === "--print-sql") printSql = true;
  else if (a.startsWith("--")) fail(`unknown option ${a}\n${usage}`);
  else positional.push(a);
}
if (positional.length !== 2) fail(usage);
const [user, tier] = positional;
if (!TIERS.includes(tier)) fail(`tier must be one of ${TIERS.join(", ")}`);

let statements;
try {
  statements = tierChangeStatements({ user, tier });
} catch (err) {
  fail(err.message);
}
if (printSql) {
  console.log(`${statements.join(";\n")};`);
  process.exit(0);
}

const offline = offlineEnv();

/** Runs SQL through wrangler (arguments passed as an array: no shell, no shell quoting). */
function d1(sql) {
  const run = spawnSync("wrangler", ["d1", "execute", "DB", ...target, "--json", "--command", sql], {
    encoding: "utf8",
    env: offline,
  });
  if (run.status !== 0) fail(`wrangler d1 execute failed:\n${run.stdout}${run.stderr}`);
  try {
    return JSON.parse(run.stdout);
  } catch {
    fail(`unexpected output from wrangler:\n${run.stdout}`);
  }
}

const [found] = d1(lookupUserSql(user))[0].results;
if (!found) fail(`no user ${user} (a user exists after their first authenticated request)`);
// One call: the change, then the read-back (the last statement's result).
const [after] = d1([...statements, lookupUserSql(user)].join(";\n")).at(-1).results;
console.log(`${found.id}: ${found.tier} -> ${after.tier} (${target.join(" ")}; audit_log entry written)`);
if (after.tier !== tier) fail("the tier did not change; see the output above");

function fail(message) {
  console.error(message);
  process.exit(1);
}
