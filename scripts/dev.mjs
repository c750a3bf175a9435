// `npm run dev`: first-run .dev.vars, local D1 migrations, then the agent host with its watchdog
// (docs/local-isolation.md) and `wrangler dev` of the gateway on 127.0.0.1:8787 with
// DISPATCH_MODE=host, so an agent that never yields cannot stall the gateway.
// `AGENT_HOST=off npm run dev` runs the gateway alone with the in-process Worker Loader.
// No Cloudflare account and no internet needed. Extra arguments go to the gateway's `wrangler dev`.
// The gateway's wrangler stays in this terminal's process group (not launcher.ts's own group): its
// interactive keys read the terminal, which only the foreground group may do; Ctrl-C reaches it
// directly. The host runs in its own group (launcher.ts), ended when this process exits.
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { startAgentHost } from "./lib/agent-host.ts";
import { ensureDevVars } from "./lib/dev-vars.ts";
import { offlineEnv, PROJECT_ROOT } from "./lib/offline-env.ts";

const useHost = (process.env.AGENT_HOST ?? "on") !== "off";
// The gateway finds the host through the dev registry: a project-local one, shared by the two
// processes and by nobody else's.
const env = offlineEnv(useHost ? { WRANGLER_REGISTRY_PATH: join(PROJECT_ROOT, ".wrangler", "registry") } : {});

if (await ensureDevVars())
  console.log("Created .dev.vars with a fresh SECRETS_ENCRYPTION_KEY and a local signing key.");

const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local"], { stdio: "inherit", env });
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

let host;
if (useHost) {
  console.log("Starting the agent host (agents run there; AGENT_HOST=off to run them in the gateway)…");
  host = await startAgentHost({
    env,
    persistDir: join(PROJECT_ROOT, ".wrangler", "agent-host-state"),
    echo: true,
    logLevel: "log",
  });
}

const port = process.env.PORT ?? "8787";
const mode = useHost ? ["--var", "DISPATCH_MODE:host"] : [];
const dev = spawn("wrangler", ["dev", "--ip", "127.0.0.1", "--port", port, ...mode, ...process.argv.slice(2)], {
  stdio: "inherit",
  env,
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => dev.kill(signal));
dev.on("exit", async (code) => {
  await host?.stop();
  process.exit(code ?? 0);
});
