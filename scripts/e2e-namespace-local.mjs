// `node scripts/e2e-namespace-local.mjs`: runs the production configuration on this machine with
// the namespace mechanism talking to a local fake Cloudflare API, and checks that a deploy makes
// exactly the upload Cloudflare expects and that the deployment becomes active.
//   1. starts scripts/fake-cloudflare-api.mjs on FAKE_CF_PORT (default 8794);
//   2. applies the D1 migrations to a fresh local state directory;
//   3. starts `wrangler dev --env production` on PORT (default 8793) with
//      CLOUDFLARE_API_BASE_URL pointing at the fake;
//   4. creates an agent, deploys the built-in template, polls until the deployment is active;
//   5. checks the fake received one upload with the expected metadata, bindings and tags;
//   6. deletes the agent and waits for the cleanup job to delete its scripts by tag.
// Invoking through the namespace cannot run locally (miniflare has no dispatch namespaces), so
// this stops at the upload. Both servers run in their own process groups and are stopped at exit.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importJWK, SignJWT } from "jose";
import { ensureDevVars, readDevVars } from "./lib/dev-vars.mjs";

const port = process.env.PORT ?? "8793";
const fakePort = process.env.FAKE_CF_PORT ?? "8794";
const accountId = "0123456789abcdef0123456789abcdef";
const apiToken = `fake-token-${Date.now()}`;
const issuer = "http://127.0.0.1/local-e2e";
const base = `http://127.0.0.1:${port}`;
const fakeBase = `http://127.0.0.1:${fakePort}`;
const offline = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };
const state = mkdtempSync(join(tmpdir(), "webhost-ns-e2e-"));
const children = [];

function start(label, cmd, args, env = offline) {
  const child = spawn(cmd, args, { env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const prefix = (chunk) =>
    String(chunk)
      .split("\n")
      .filter(Boolean)
      .map((l) => `[${label}] ${l}`)
      .join("\n");
  child.stdout.on("data", (c) => console.log(prefix(c)));
  child.stderr.on("data", (c) => console.error(prefix(c)));
  children.push(child);
  return child;
}

function stopAll() {
  for (const child of children) {
    try {
      process.kill(-child.pid, "SIGTERM"); // the whole group: wrangler leaves workerd children
    } catch {}
  }
  rmSync(state, { recursive: true, force: true });
}
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

function fail(message) {
  console.error(`\n✗ ${message}`);
  process.exit(1);
}

async function waitFor(label, probe, timeoutMs = 60_000, everyMs = 500) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value) return value;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  fail(`timed out waiting for ${label}`);
}

await ensureDevVars();
const vars = readDevVars();
const jwk = JSON.parse(vars.DEV_SIGNING_JWK);
const now = Math.floor(Date.now() / 1000);
const token = await new SignJWT({ name: "e2e" })
  .setProtectedHeader({ alg: "ES256", kid: jwk.kid, typ: "JWT" })
  .setSubject(`local|e2e-${Date.now()}`)
  .setIssuer(issuer)
  .setIssuedAt(now)
  .setExpirationTime(now + 3600)
  .sign(await importJWK(jwk, "ES256"));
const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };

start("fake-cloudflare", "node", ["scripts/fake-cloudflare-api.mjs"], {
  ...offline,
  FAKE_CF_PORT: fakePort,
  FAKE_CF_ACCOUNT_ID: accountId,
  FAKE_CF_API_TOKEN: apiToken,
  FAKE_CF_NAMESPACE: "webhost-agents",
});
await waitFor("the fake Cloudflare API", async () => (await fetch(`${fakeBase}/__fake/scripts`)).ok, 10_000);

const migrate = spawnSync(
  "wrangler",
  ["d1", "migrations", "apply", "DB", "--local", "--env", "production", "--persist-to", state],
  { env: offline, stdio: "inherit" },
);
if (migrate.status !== 0) fail("migrations failed");

start("gateway", "wrangler", [
  "dev",
  "--env",
  "production",
  "--ip",
  "127.0.0.1",
  "--port",
  port,
  "--persist-to",
  state,
  "--var",
  `CLOUDFLARE_API_BASE_URL:${fakeBase}/client/v4`,
  "--var",
  `CLOUDFLARE_ACCOUNT_ID:${accountId}`,
  "--var",
  `CLOUDFLARE_API_TOKEN:${apiToken}`,
  "--var",
  `AUTH_ISSUER:${issuer}`,
  "--var",
  `AUTH_JWKS:${vars.AUTH_JWKS}`,
  "--var",
  `SECRETS_ENCRYPTION_KEY:${vars.SECRETS_ENCRYPTION_KEY}`,
]);
await waitFor("wrangler dev --env production", async () => (await fetch(`${base}/openapi.json`)).ok);
console.log("\n▶ gateway (production config) and fake Cloudflare API are up");

const created = await fetch(`${base}/v1/agents`, {
  method: "POST",
  headers: auth,
  body: JSON.stringify({ name: `ns-e2e-${Date.now()}` }),
});
if (created.status !== 201) fail(`create agent: ${created.status} ${await created.text()}`);
const { agent } = await created.json();

const deployRes = await fetch(`${base}/v1/agents/${agent.id}/deploy`, { method: "POST", headers: auth, body: "{}" });
if (deployRes.status !== 202) fail(`deploy: ${deployRes.status} ${await deployRes.text()}`);
const { deployment } = await deployRes.json();
console.log(`▶ deploy accepted: ${deployment.id} (${deployment.status})`);

const active = await waitFor("the deployment to become active", async () => {
  const res = await fetch(`${base}/v1/agents/${agent.id}/deployments`, { headers: auth });
  const { deployments } = await res.json();
  const d = deployments.find((x) => x.id === deployment.id);
  if (d?.status === "failed") fail(`deployment failed: ${d.errorMessage}`);
  return d?.status === "active" ? d : undefined;
});
console.log(`✓ deployment ${active.id} is active`);

const scripts = await (await fetch(`${fakeBase}/__fake/scripts`)).json();
const names = Object.keys(scripts);
if (names.length !== 1) fail(`expected exactly one uploaded script, got ${names.join(", ") || "none"}`);
const [scriptName] = names;
const upload = scripts[scriptName];
const byName = Object.fromEntries(upload.bindings.map((b) => [b.name, b]));
const checks = [
  ["main_module names the uploaded module", upload.modules.some((m) => m.name === upload.main_module)],
  ["module part is application/javascript+module", upload.modules[0]?.contentType === "application/javascript+module"],
  ["compatibility_date is set", /^\d{4}-\d{2}-\d{2}$/.test(upload.compatibility_date ?? "")],
  [
    "TELEMETRY is a service binding to webhost-gateway's TelemetrySink",
    byName.TELEMETRY?.type === "service" &&
      byName.TELEMETRY.service === "webhost-gateway" &&
      byName.TELEMETRY.entrypoint === "TelemetrySink",
  ],
  ["TELEMETRY_SECRET is secret_text", byName.TELEMETRY_SECRET?.type === "secret_text"],
  [
    "identity vars are plain_text",
    ["USER_ID", "AGENT_ID", "DEPLOYMENT_ID", "RUNTIME_PROVIDER"].every((n) => byName[n]?.type === "plain_text"),
  ],
  ["DEPLOYMENT_ID is the deployment", byName.DEPLOYMENT_ID?.text === deployment.id],
  ["tagged with the agent", upload.tags.includes(`agent-${agent.id}`)],
  ["tagged with the deployment", upload.tags.includes(`deployment-${deployment.id}`)],
];
for (const [label, ok] of checks) console.log(`${ok ? "✓" : "✗"} ${label}`);
if (checks.some(([, ok]) => !ok)) fail("the upload does not have the expected shape");

const deleted = await fetch(`${base}/v1/agents/${agent.id}`, { method: "DELETE", headers: auth });
if (deleted.status !== 204) fail(`delete agent: ${deleted.status}`);
await waitFor(
  "the agent's scripts to be deleted by tag",
  async () => Object.keys(await (await fetch(`${fakeBase}/__fake/scripts`)).json()).length === 0,
  30_000,
);
console.log("✓ deleting the agent removed its script from the namespace");
console.log("\n✓ namespace mechanism end to end against the fake Cloudflare API");
process.exit(0);
