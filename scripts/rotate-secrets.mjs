// `npm run rotate-secrets -- <command>`: rotating SECRETS_ENCRYPTION_KEY.
//   new-key   local: moves the current key of .dev.vars into SECRETS_ENCRYPTION_PREVIOUS_KEYS and
//             writes a fresh SECRETS_ENCRYPTION_KEY (restart `npm run dev` afterwards)
//   run       local: triggers the cron of a running `npm run dev` (which re-encrypts up to 500 rows
//             per column per run) until no stored ciphertext is left under an older key
//   status    counts ciphertext not under the current key; `--remote --env production --key-id <id>`
//             checks the deployed database (the id is in the cron's `secrets_reencrypt` log line,
//             or from `key-id`)
//   finish    local: removes SECRETS_ENCRYPTION_PREVIOUS_KEYS from .dev.vars once status is 0
//   key-id    prints the key id of a key read from stdin (e.g. `printf %s "$KEY" | npm run rotate-secrets -- key-id`)
// Options: --port <n> (dev server port for `run`, default $PORT or 8787).
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { DEV_VARS_PATH, readDevVars } from "./lib/dev-vars.ts";
import { offlineEnv } from "./lib/offline-env.ts";

const args = process.argv.slice(2);
const command = args[0];
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const remote = args.includes("--remote");
const envName = option("--env");
const port = option("--port") ?? process.env.PORT ?? "8787";
const offline = offlineEnv();

/** Same derivation as src/crypto/keys.ts: first 12 hex chars of sha256(raw key bytes). */
function keyIdOf(text) {
  const t = text.trim();
  const bytes = t.startsWith("hex:")
    ? Buffer.from(t.slice(4), "hex")
    : Buffer.from(t.replaceAll("-", "+").replaceAll("_", "/"), "base64");
  if (bytes.length !== 32) fail(`an encryption key must be 32 bytes, got ${bytes.length}`);
  return createHash("sha256").update(bytes).digest("hex").slice(0, 12);
}

function localKeyId() {
  const key = readDevVars().SECRETS_ENCRYPTION_KEY;
  if (!key) fail(".dev.vars has no SECRETS_ENCRYPTION_KEY (run `npm run dev` once to create it)");
  return keyIdOf(key);
}

/** Stored ciphertext per column that is not under `keyId`. */
function staleCounts(keyId) {
  if (!/^[0-9a-f]{12}$/.test(keyId)) fail("a key id is 12 lowercase hex characters");
  const prefix = `'v1.${keyId}.'`;
  const n = keyId.length + 4;
  const sql = [
    `SELECT 'agent_secrets.ciphertext' AS col, COUNT(*) AS stale FROM agent_secrets WHERE substr(ciphertext, 1, ${n}) <> ${prefix}`,
    `SELECT 'deployments.telemetry_secret_ciphertext', COUNT(*) FROM deployments WHERE substr(telemetry_secret_ciphertext, 1, ${n}) <> ${prefix}`,
    `SELECT 'deployments.secrets_snapshot_ciphertext', COUNT(*) FROM deployments WHERE secrets_snapshot_ciphertext IS NOT NULL AND substr(secrets_snapshot_ciphertext, 1, ${n}) <> ${prefix}`,
    `SELECT 'webhook_endpoints.secret_ciphertext', COUNT(*) FROM webhook_endpoints WHERE substr(secret_ciphertext, 1, ${n}) <> ${prefix}`,
    `SELECT 'webhook_endpoints.previous_secret_ciphertext', COUNT(*) FROM webhook_endpoints WHERE previous_secret_ciphertext IS NOT NULL AND substr(previous_secret_ciphertext, 1, ${n}) <> ${prefix}`,
  ].join(" UNION ALL ");
  const target = remote ? ["--remote"] : ["--local"];
  if (envName) target.push("--env", envName);
  const run = spawnSync("wrangler", ["d1", "execute", "DB", ...target, "--json", "--command", sql], {
    encoding: "utf8",
    env: offline,
  });
  if (run.status !== 0) fail(`wrangler d1 execute failed:\n${run.stdout}${run.stderr}`);
  const rows = JSON.parse(run.stdout)[0].results;
  return Object.fromEntries(rows.map((r) => [r.col, r.stale]));
}

const total = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);

function writeDevVar(name, value) {
  const lines = readFileSync(DEV_VARS_PATH, "utf8").split("\n");
  const i = lines.findIndex((l) => l.startsWith(`${name}=`));
  if (value === undefined) {
    if (i >= 0) lines.splice(i, 1);
  } else if (i >= 0) lines[i] = `${name}=${value}`;
  else lines.splice(lines.at(-1) === "" ? lines.length - 1 : lines.length, 0, `${name}=${value}`);
  writeFileSync(DEV_VARS_PATH, lines.join("\n"), { mode: 0o600 });
}

switch (command) {
  case "new-key": {
    const vars = readDevVars();
    if (!vars.SECRETS_ENCRYPTION_KEY) fail(".dev.vars has no SECRETS_ENCRYPTION_KEY (run `npm run dev` once)");
    const previous = [vars.SECRETS_ENCRYPTION_KEY, ...(vars.SECRETS_ENCRYPTION_PREVIOUS_KEYS ?? "").split(",")]
      .map((k) => k.trim())
      .filter(Boolean);
    const next = randomBytes(32).toString("base64");
    writeDevVar("SECRETS_ENCRYPTION_PREVIOUS_KEYS", previous.join(","));
    writeDevVar("SECRETS_ENCRYPTION_KEY", next);
    console.log(`new key ${keyIdOf(next)}; previous keys: ${previous.map(keyIdOf).join(", ")}`);
    console.log("Restart `npm run dev`, then run `npm run rotate-secrets -- run`.");
    break;
  }
  case "run": {
    const keyId = localKeyId();
    let before = staleCounts(keyId);
    console.log(`current key ${keyId}; stale:`, before);
    while (total(before) > 0) {
      const res = await fetch(`http://127.0.0.1:${port}/cdn-cgi/local/scheduled?cron=*/5+*+*+*+*&format=json`).catch(
        (err) => fail(`no dev server on 127.0.0.1:${port} (${err.message}); start \`npm run dev\` first`),
      );
      if (!res.ok) fail(`the scheduled run failed (${res.status}): ${await res.text()}; see the dev server's log`);
      const after = staleCounts(keyId);
      console.log("stale:", after);
      if (total(after) >= total(before)) {
        fail(
          "no progress: the remaining rows cannot be decrypted with the configured keys, or the dev server still runs " +
            "with the old key (restart it after `new-key`); see `secret_reencrypt_failed` in its log",
        );
      }
      before = after;
    }
    console.log("Everything is under the current key; `npm run rotate-secrets -- finish` drops the previous keys.");
    break;
  }
  case "status": {
    const keyId = option("--key-id") ?? (remote ? fail("--remote needs --key-id <current key id>") : localKeyId());
    const counts = staleCounts(keyId);
    console.log(`stale ciphertext (not under key ${keyId}):`, counts);
    process.exit(total(counts) === 0 ? 0 : 2);
    break;
  }
  case "finish": {
    const counts = staleCounts(localKeyId());
    if (total(counts) > 0) fail(`rows are still under older keys: ${JSON.stringify(counts)}; run \`run\` first`);
    writeDevVar("SECRETS_ENCRYPTION_PREVIOUS_KEYS", undefined);
    console.log("Removed SECRETS_ENCRYPTION_PREVIOUS_KEYS from .dev.vars; restart `npm run dev`.");
    break;
  }
  case "key-id": {
    console.log(keyIdOf(readFileSync(0, "utf8")));
    break;
  }
  default:
    fail(
      "usage: npm run rotate-secrets -- new-key | run [--port n] | status [--remote --env production --key-id id] | finish | key-id",
    );
}

function fail(message) {
  console.error(message);
  process.exit(1);
}
