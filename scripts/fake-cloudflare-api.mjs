// A local stand-in for Cloudflare's API, for running the namespace mechanism on this machine:
//   FAKE_CF_PORT=8794 node scripts/fake-cloudflare-api.mjs
// then start the gateway with CLOUDFLARE_API_BASE_URL=http://127.0.0.1:8794/client/v4 (see
// docs/production.md, "Running the namespace mechanism locally against a fake Cloudflare API"). It validates every
// request as Cloudflare would (scripts/lib/fake-cloudflare-api.ts) and logs one line per request
// (binding names and types, never their values). GET /__fake/scripts lists what was uploaded,
// secret_text values redacted. Listens on 127.0.0.1 only.
import { createServer } from "node:http";
import { createFakeCloudflareApi } from "./lib/fake-cloudflare-api.ts";

const port = Number(process.env.FAKE_CF_PORT ?? "8794");
const accountId = process.env.FAKE_CF_ACCOUNT_ID ?? "0123456789abcdef0123456789abcdef";
const apiToken = process.env.FAKE_CF_API_TOKEN ?? "fake-cloudflare-api-token";
const namespace = process.env.FAKE_CF_NAMESPACE ?? "webhost-agents";

const api = createFakeCloudflareApi({
  accountId,
  apiToken,
  namespace,
  log: (line) => console.log(`[fake-cloudflare] ${new Date().toISOString()} ${line}`),
});

function redacted(script) {
  return {
    ...script.metadata,
    bindings: (script.metadata.bindings ?? []).map((b) =>
      b.type === "secret_text" ? { ...b, text: "<redacted>" } : b,
    ),
    modules: script.modules.map((m) => ({ name: m.name, contentType: m.contentType, bytes: m.content.length })),
  };
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? "/", `http://127.0.0.1:${port}`);
    if (req.method === "GET" && url.pathname === "/__fake/scripts") {
      const body = Object.fromEntries([...api.scripts.entries()].map(([name, s]) => [name, redacted(s)]));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body, null, 2));
      return;
    }
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    const request = new Request(url, {
      method: req.method,
      headers: Object.entries(req.headers).flatMap(([k, v]) =>
        v === undefined ? [] : Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]],
      ),
      body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
      signal: controller.signal,
    });
    const response = await api.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  } catch (err) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(
      JSON.stringify({ success: false, errors: [{ code: 10002, message: String(err) }], messages: [], result: null }),
    );
  }
});

server.listen(port, "127.0.0.1", () => {
  console.log(`[fake-cloudflare] listening on http://127.0.0.1:${port}/client/v4`);
  console.log(`[fake-cloudflare] account ${accountId}, namespace ${namespace}, token from FAKE_CF_API_TOKEN`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
