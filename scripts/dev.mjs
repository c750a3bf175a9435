// `npm run dev`: first-run .dev.vars, local D1 migrations, then `wrangler dev` on 127.0.0.1:8787.
// No Cloudflare account and no internet needed. Extra arguments go to `wrangler dev`.
import { spawn, spawnSync } from "node:child_process";
import { ensureDevVars } from "./lib/dev-vars.mjs";

const offline = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

if (await ensureDevVars())
  console.log("Created .dev.vars with a fresh SECRETS_ENCRYPTION_KEY and a local signing key.");

const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local"], {
  stdio: "inherit",
  env: offline,
});
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

const port = process.env.PORT ?? "8787";
const dev = spawn("wrangler", ["dev", "--ip", "127.0.0.1", "--port", port, ...process.argv.slice(2)], {
  stdio: "inherit",
  env: offline,
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => dev.kill(signal));
dev.on("exit", (code) => process.exit(code ?? 0));
