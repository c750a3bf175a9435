// The environment every tool this project runs (wrangler, tsc, vitest, the scripts themselves)
// gets: the project's own binaries first on PATH (wrangler needs the Node 22 that node_modules
// ships), and wrangler's network features off, so nothing here needs an account or the internet.
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export const PROJECT_BIN = join(PROJECT_ROOT, "node_modules", ".bin");

/** Keeps wrangler from fetching request.cf data and from sending usage metrics. */
export const OFFLINE_VARS = {
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
} as const;

export type Env = Record<string, string | undefined>;

/** This process's environment, plus the project's binaries on PATH and the offline vars, plus `extra`. */
export function offlineEnv(extra: Env = {}): Env {
  return {
    ...process.env,
    PATH: `${PROJECT_BIN}${delimiter}${process.env.PATH ?? ""}`,
    ...OFFLINE_VARS,
    ...extra,
  };
}
