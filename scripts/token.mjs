// `npm run token -- <name> [--ttl <seconds>] [--audience <aud>]`: prints a JWT that the local dev
// server accepts, signed with DEV_SIGNING_JWK from .dev.vars (created on first use, as `npm run dev`
// does). `--audience` sets `aud` (for a local run of the production configuration, which insists on one).
import { mintDevToken } from "./lib/dev-vars.ts";

const args = process.argv.slice(2);
const option = (flag) => (args.indexOf(flag) >= 0 ? args[args.indexOf(flag) + 1] : undefined);
const flagValues = new Set(["--ttl", "--audience"].map(option).filter((v) => v !== undefined));
const name = args.find((a) => !a.startsWith("--") && !flagValues.has(a)) ?? "dev-user";
const ttlSeconds = option("--ttl") !== undefined ? Number(option("--ttl")) : 24 * 3600;
const audience = option("--audience");

try {
  console.log(await mintDevToken(name, { ttlSeconds, audience }));
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
