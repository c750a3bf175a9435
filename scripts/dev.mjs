// `npm run dev`: first-run .dev.vars, local D1 migrations, then `wrangler dev` on 127.0.0.1:8787.
// No Cloudflare account and no internet needed. Extra arguments go to `wrangler dev`.
// wrangler stays in this terminal's process group (not launcher.ts's own group): its interactive
// keys read the terminal, which only the foreground group may do; Ctrl-C reaches it directly.
import { spawn, spawnSync } from "node:child_process";
import { ensureDevVars } from "./lib/dev-vars.ts";
import { offlineEnv } from "./lib/offline-env.ts";

const env = offlineEnv();

if (await ensureDevVars())
  console.log("Created .dev.vars with a fresh SECRETS_ENCRYPTION_KEY and a local signing key.");

const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local"], { stdio: "inherit", env });
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

const port = process.env.PORT ?? "8787";
const dev = spawn("wrangler", ["dev", "--ip", "127.0.0.1", "--port", port, ...process.argv.slice(2)], {
  stdio: "inherit",
  env,
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => dev.kill(signal));
dev.on("exit", (code) => process.exit(code ?? 0));
