// `npm run token -- <name> [--ttl <seconds>]`: prints a JWT that the local dev server accepts,
// signed with DEV_SIGNING_JWK from .dev.vars (run `npm run dev` once first to create it).
import { importJWK, SignJWT } from "jose";
import { ensureDevVars, LOCAL_ISSUER, readDevVars } from "./lib/dev-vars.mjs";

const args = process.argv.slice(2);
const name = args.find((a) => !a.startsWith("--")) ?? "dev-user";
const ttlIndex = args.indexOf("--ttl");
const ttl = ttlIndex >= 0 ? Number(args[ttlIndex + 1]) : 24 * 3600;

await ensureDevVars();
const vars = readDevVars();
if (!vars.DEV_SIGNING_JWK) {
  console.error(".dev.vars has no DEV_SIGNING_JWK; move the file away and run `npm run dev` to recreate it.");
  process.exit(1);
}
const jwk = JSON.parse(vars.DEV_SIGNING_JWK);
const key = await importJWK(jwk, "ES256");
const now = Math.floor(Date.now() / 1000);
const token = await new SignJWT({ name })
  .setProtectedHeader({ alg: "ES256", kid: jwk.kid, typ: "JWT" })
  .setSubject(`local|${name}`)
  .setIssuer(process.env.AUTH_ISSUER ?? LOCAL_ISSUER)
  .setIssuedAt(now)
  .setExpirationTime(now + ttl)
  .sign(key);
console.log(token);
