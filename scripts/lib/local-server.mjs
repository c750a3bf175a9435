// Shared by `npm run demo` and `npm run measure:latency`: finds the local gateway (or starts
// `npm run dev` in its own process group and stops that group afterwards), mints local tokens,
// and wraps the HTTP calls the scripts make.
import { spawn } from "node:child_process";
import { importJWK, SignJWT } from "jose";
import { ensureDevVars, LOCAL_ISSUER, readDevVars } from "./dev-vars.mjs";

export const PORT = process.env.PORT ?? "8787";
export const BASE = process.env.GATEWAY_URL ?? `http://127.0.0.1:${PORT}`;

async function healthy() {
  try {
    const res = await fetch(`${BASE}/healthz`, { signal: AbortSignal.timeout(1000) });
    return res.ok;
  } catch {
    return false;
  }
}

/** Uses a running gateway at BASE, or starts one; returns a function that stops what it started. */
export async function ensureServer({ log = console.log } = {}) {
  await ensureDevVars();
  if (await healthy()) {
    log(`Using the gateway already running at ${BASE}`);
    return async () => {};
  }
  if (process.env.GATEWAY_URL) throw new Error(`GATEWAY_URL=${BASE} does not answer /healthz`);
  log(`Starting the local gateway (npm run dev) on ${BASE} …`);
  const child = spawn(process.execPath, ["scripts/dev.mjs"], {
    env: { ...process.env, PORT },
    detached: true, // its own process group, so stopping it also stops wrangler and workerd
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const stop = async () => {
    if (child.exitCode !== null) return;
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {}
        resolve();
      }, 5000);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  };
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.once(signal, async () => {
      await stop();
      process.exit(130);
    });
  }
  const deadline = Date.now() + 90_000;
  while (!(await healthy())) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`the dev server did not start:\n${output.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  log(`Gateway is up at ${BASE}`);
  return stop;
}

export async function mintToken(name) {
  const vars = readDevVars();
  if (!vars.DEV_SIGNING_JWK) throw new Error(".dev.vars has no DEV_SIGNING_JWK (move it away and rerun)");
  const jwk = JSON.parse(vars.DEV_SIGNING_JWK);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ name })
    .setProtectedHeader({ alg: "ES256", kid: jwk.kid, typ: "JWT" })
    .setSubject(`local|${name}`)
    .setIssuer(process.env.AUTH_ISSUER ?? LOCAL_ISSUER)
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(await importJWK(jwk, "ES256"));
}

export function client(token) {
  const headers = { authorization: `Bearer ${token}` };
  async function request(method, path, body, extraHeaders = {}) {
    const res = await fetch(`${BASE}${path}`, {
      method,
      headers: { ...headers, ...(body !== undefined ? { "content-type": "application/json" } : {}), ...extraHeaders },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    return res;
  }
  async function json(method, path, body) {
    const res = await request(method, path, body);
    const text = await res.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
    return { status: res.status, headers: res.headers, data };
  }
  return { request, json };
}

/** Yields SSE events ({ event, data }) from a fetch Response as they arrive. */
export async function* sseEvents(res) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk, { stream: true }).replaceAll("\r\n", "\n");
    for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      let parsed = data.join("\n");
      try {
        parsed = JSON.parse(parsed);
      } catch {}
      yield { event, data: parsed };
    }
  }
}

/** Polls a deployment until it leaves `deploying`. */
export async function waitForDeployment(api, agentId, deploymentId, { timeoutMs = 30_000, intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, data } = await api.json("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`);
    if (status !== 200) throw new Error(`reading deployment answered ${status}: ${JSON.stringify(data)}`);
    if (data.deployment.status !== "deploying") return data.deployment;
    if (Date.now() > deadline) throw new Error(`deployment ${deploymentId} still deploying after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
