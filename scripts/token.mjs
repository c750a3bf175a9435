// `npm run token -- <name> [--ttl <seconds>]`: prints a JWT that the local dev server accepts,
// signed with DEV_SIGNING_JWK from .dev.vars (created on first use, as `npm run dev` does).
import { mintDevToken } from "./lib/dev-vars.ts";

const args = process.argv.slice(2);
const name = args.find((a) => !a.startsWith("--")) ?? "dev-user";
const ttlIndex = args.indexOf("--ttl");
const ttlSeconds = ttlIndex >= 0 ? Number(args[ttlIndex + 1]) : 24 * 3600;

try {
  console.log(await mintDevToken(name, { ttlSeconds }));
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
