// `node scripts/e2e-namespace-local.mjs`: runs the production configuration on this machine with
// the namespace mechanism talking to a local fake Cloudflare API, and checks that a deploy makes
// exactly the upload Cloudflare expects and that the deployment becomes active.
//   1. starts scripts/fake-cloudflare-api.mjs on FAKE_CF_PORT (default: a free port);
//   2. starts `wrangler dev --env production` (scripts/lib/dev-server.ts: fresh local state with
//      the D1 migrations applied, its own signing key, on PORT or a free port) with
//      CLOUDFLARE_API_BASE_URL pointing at the fake;
//   3. creates an agent, deploys the built-in template, polls until the deployment is active;
//   4. checks the fake received one upload with the expected metadata, bindings, tags and tail consumer,
//      and that webhook receivers on private, loopback or http addresses are refused (production);
//   5. deletes the agent and waits for the cleanup job to delete its scripts by tag.
// Invoking through the namespace cannot run locally (miniflare has no dispatch namespaces), so
// this stops at the upload. Both servers run in their own process groups (scripts/lib/launcher.ts)
// and are stopped at exit, whatever the exit.
import { freePort, startDevServer } from "./lib/dev-server.ts";
import { httpClient } from "./lib/http-client.ts";
import { launch, waitForHttp } from "./lib/launcher.ts";
import { mintToken, newSigningKey } from "./lib/tokens.ts";

const accountId = "0123456789abcdef0123456789abcdef";
const apiToken = `fake-token-${Date.now()}`;
const issuer = "http://127.0.0.1/local-e2e";
// Production refuses to serve unless tokens are checked for whom they are for (AUTH_AUDIENCE or AUTH_AUTHORIZED_PARTIES).
const audience = "webhost-e2e";

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

const fakePort = process.env.FAKE_CF_PORT ?? String(await freePort());
const fakeBase = `http://127.0.0.1:${fakePort}`;
const fake = launch(process.execPath, ["scripts/fake-cloudflare-api.mjs"], {
  echo: true,
  label: "fake-cloudflare",
  env: {
    ...process.env,
    FAKE_CF_PORT: fakePort,
    FAKE_CF_ACCOUNT_ID: accountId,
    FAKE_CF_API_TOKEN: apiToken,
    FAKE_CF_NAMESPACE: "webhost-agents",
  },
});
await waitForHttp(`${fakeBase}/__fake/scripts`, { launched: fake, timeoutMs: 10_000 });
const fakeScripts = async () => (await fetch(`${fakeBase}/__fake/scripts`)).json();

const { publicJwk, privateJwk } = await newSigningKey("ns-e2e-es256");
const server = await startDevServer({
  wranglerEnv: "production",
  port: process.env.PORT ? Number(process.env.PORT) : undefined,
  echo: true,
  vars: {
    CLOUDFLARE_API_BASE_URL: `${fakeBase}/client/v4`,
    CLOUDFLARE_ACCOUNT_ID: accountId,
    CLOUDFLARE_API_TOKEN: apiToken,
    AUTH_ISSUER: issuer,
    AUTH_AUDIENCE: audience,
    AUTH_JWKS: JSON.stringify({ keys: [publicJwk] }),
  },
});
console.log("\n▶ gateway (production config) and fake Cloudflare API are up");

const token = await mintToken(privateJwk, { subject: `local|e2e-${Date.now()}`, issuer, audience, expiresIn: 3600 });
const api = httpClient({ baseUrl: server.baseUrl, token, timeoutMs: 30_000 });

const created = await api.json("POST", "/v1/agents", { name: `ns-e2e-${Date.now()}` });
if (created.status !== 201) fail(`create agent: ${created.status} ${JSON.stringify(created.data)}`);
const { agent } = created.data;

const deployRes = await api.json("POST", `/v1/agents/${agent.id}/deploy`, {});
if (deployRes.status !== 202) fail(`deploy: ${deployRes.status} ${JSON.stringify(deployRes.data)}`);
const { deployment } = deployRes.data;
console.log(`▶ deploy accepted: ${deployment.id} (${deployment.status})`);

const active = await waitFor("the deployment to become active", async () => {
  const { data } = await api.json("GET", `/v1/agents/${agent.id}/deployments`);
  const d = data.deployments.find((x) => x.id === deployment.id);
  if (d?.status === "failed") fail(`deployment failed: ${d.errorMessage}`);
  return d?.status === "active" ? d : undefined;
});
console.log(`✓ deployment ${active.id} is active`);

const scripts = await fakeScripts();
const names = Object.keys(scripts);
if (names.length !== 1) fail(`expected exactly one uploaded script, got ${names.join(", ") || "none"}`);
const [scriptName] = names;
const upload = scripts[scriptName];
const byName = Object.fromEntries(upload.bindings.map((b) => [b.name, b]));
const checks = [
  ["main_module names the uploaded module", upload.modules.some((m) => m.name === upload.main_module)],
  [
    "module parts are application/javascript+module",
    upload.modules.every((m) => m.contentType === "application/javascript+module"),
  ],
  ["the platform's main module imports the agent's", upload.modules.some((m) => m.name === "index.mjs")],
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
  [
    "the gateway is its tail consumer (agent logs)",
    JSON.stringify(upload.tail_consumers) === JSON.stringify([{ service: "webhost-gateway" }]),
  ],
];
for (const [label, ok] of checks) console.log(`${ok ? "✓" : "✗"} ${label}`);
if (checks.some(([, ok]) => !ok)) fail("the upload does not have the expected shape");

// Outside development, webhook receivers must be https and public.
for (const url of [
  "http://127.0.0.1:9/hook",
  "https://127.0.0.1/hook",
  "https://10.0.0.7/hook",
  "https://[::1]/hook",
]) {
  const refused = await api.json("POST", "/v1/webhooks", { url, events: ["deployment.active"] });
  if (refused.status !== 400 || refused.data?.code !== "validation_failed") {
    fail(`webhook ${url}: expected 400 validation_failed, got ${refused.status} ${JSON.stringify(refused.data)}`);
  }
}
const publicHook = await api.json("POST", "/v1/webhooks", {
  url: "https://hooks.example.com/webhost",
  events: ["deployment.active"],
});
if (publicHook.status !== 201) fail(`public webhook: ${publicHook.status} ${JSON.stringify(publicHook.data)}`);
console.log(
  "✓ webhooks to private, loopback or http receivers are refused outside development; a public https one is accepted",
);

const deleted = await api.request("DELETE", `/v1/agents/${agent.id}`);
if (deleted.status !== 204) fail(`delete agent: ${deleted.status}`);
await waitFor(
  "the agent's scripts to be deleted by tag",
  async () => Object.keys(await fakeScripts()).length === 0,
  30_000,
);
console.log("✓ deleting the agent removed its script from the namespace");
console.log("\n✓ namespace mechanism end to end against the fake Cloudflare API");
await server.stop();
await fake.stop();
process.exit(0);
