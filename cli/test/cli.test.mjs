// The real binary against a fake API (node:http in this process): credentials and the config
// file, retries under one Idempotency-Key, waiting for a deployment, errors and exit codes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

const BIN = join(dirname(fileURLToPath(import.meta.url)), "..", "bin", "webhost.mjs");
const KEY = `whk_${"a".repeat(49)}`;

/** @type {(req: import("node:http").IncomingMessage, body: string, res: import("node:http").ServerResponse) => void} */
let handler = () => {};
/** @type {Array<{ method: string, url: string, headers: Record<string, any>, body: string }>} */
let requests = [];
let server;
let apiUrl;

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  apiUrl = `http://127.0.0.1:${server.address().port}`;
});
after(() => server.close());

function send(res, status, body, headers = {}) {
  const problem = status >= 400 && body && "title" in body;
  res.writeHead(status, {
    "content-type": problem ? "application/problem+json" : "application/json",
    "x-request-id": "req_test1",
    ...headers,
  });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

/** Runs the CLI; stdin is a pipe (not a TTY), so nothing prompts. */
function run(args, { env = {}, input = "" } = {}) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, WEBHOST_CONFIG_DIR: mkdtempSync(join(tmpdir(), "webhost-cfg-")), ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c) => {
    stdout += c;
  });
  child.stderr.on("data", (c) => {
    stderr += c;
  });
  child.stdin.end(input);
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

const agent = { id: "agt_1", name: "demo", status: "active", activeDeploymentId: null };

test("login stores the credential for its API URL in a 0600 file; another API URL never gets it", async () => {
  requests = [];
  handler = (_req, _body, res) => send(res, 200, { agents: [], nextCursor: null });
  const configDir = mkdtempSync(join(tmpdir(), "webhost-cfg-"));
  const env = { WEBHOST_CONFIG_DIR: configDir };

  const login = await run(["login", "--api-url", apiUrl, "--json"], { env, input: `${KEY}\n` });
  assert.equal(login.code, 0, login.stderr);
  assert.deepEqual(JSON.parse(login.stdout).credential, { kind: "apiKey", prefix: KEY.slice(0, 12) });
  assert.equal(requests[0].headers.authorization, `Bearer ${KEY}`, "the key is checked before it is stored");
  const file = join(configDir, "config.json");
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), { apiUrl, credentials: { [apiUrl]: KEY } });
  assert.doesNotMatch(login.stdout + login.stderr, new RegExp(KEY), "the key is never printed");

  const whoami = await run(["whoami", "--json"], { env });
  assert.equal(whoami.code, 0, whoami.stderr);
  assert.equal(JSON.parse(whoami.stdout).apiUrl, apiUrl);

  requests = [];
  const elsewhere = await run(["whoami", "--api-url", "http://127.0.0.1:9", "--json"], { env });
  assert.equal(elsewhere.code, 2);
  assert.match(elsewhere.stderr, /no credential for http:\/\/127\.0\.0\.1:9/);
  assert.equal(requests.length, 0);
});

test("a bad key at login is refused with the problem's title, detail and requestId, and nothing is stored", async () => {
  handler = (_req, _body, res) =>
    send(res, 401, {
      status: 401,
      code: "invalid_api_key",
      title: "Invalid API key",
      detail: "unknown key",
      requestId: "req_abc",
    });
  const configDir = mkdtempSync(join(tmpdir(), "webhost-cfg-"));
  const r = await run(["login", "--api-url", apiUrl, "--json"], { env: { WEBHOST_CONFIG_DIR: configDir }, input: KEY });
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /error: Invalid API key\n {2}unknown key\n {2}\(status 401, code invalid_api_key, requestId req_abc\)/,
  );
  assert.equal(JSON.parse(r.stdout).error.requestId, "req_abc");
  assert.throws(() => statSync(join(configDir, "config.json")));
});

test("usage errors exit 2: unknown command, missing argument, a secret value on argv", async () => {
  for (const args of [
    ["bogus"],
    ["invoke"],
    ["secrets", "set", "demo", "NAME", "value"],
    ["keys", "create", "--name", "x"],
  ]) {
    const r = await run(args, { env: { WEBHOST_API_URL: apiUrl, WEBHOST_API_KEY: KEY } });
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
  }
});

test("deploy retries a 503 with the same Idempotency-Key, then waits until active", async () => {
  const dir = mkdtempSync(join(tmpdir(), "webhost-agent-"));
  const init = await run(["init", dir, "--name", "demo", "--json"]);
  assert.equal(init.code, 0, init.stderr);

  requests = [];
  let deploys = 0;
  let polls = 0;
  handler = (req, _body, res) => {
    if (req.method === "GET" && req.url.startsWith("/v1/agents?"))
      return send(res, 200, { agents: [], nextCursor: null });
    if (req.method === "POST" && req.url === "/v1/agents") return send(res, 201, { agent });
    if (req.method === "POST" && req.url === "/v1/agents/agt_1/deploy") {
      if (++deploys === 1)
        return send(
          res,
          503,
          { status: 503, code: "service_unavailable", title: "Unavailable", detail: "try again" },
          { "retry-after": "0" },
        );
      return send(res, 202, { deployment: { id: "dep_1", status: "deploying" } });
    }
    if (req.method === "GET" && req.url === "/v1/agents/agt_1/deployments/dep_1") {
      return send(res, 200, { deployment: { id: "dep_1", status: ++polls < 3 ? "deploying" : "active" } });
    }
    send(res, 404, { status: 404, title: "Not found", detail: req.url });
  };
  const r = await run(["deploy", dir, "--json"], { env: { WEBHOST_API_URL: apiUrl, WEBHOST_API_KEY: KEY } });
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.deployment.status, "active");
  assert.equal(doc.agent.created, true);
  assert.deepEqual(doc.bundle.modules, [{ name: "index.js", type: "esm" }]);
  assert.match(
    r.stderr,
    /bundling src\/index\.ts…\ncreating agent demo…\nuploading 1 module \([\d.]+ KB, request [\d.]+ KB\) to demo…\n.*503.*retrying.*\ndeploying dep_1…\nactive in/s,
  );

  const uploads = requests.filter((q) => q.url === "/v1/agents/agt_1/deploy");
  assert.equal(uploads.length, 2);
  assert.match(uploads[0].headers["idempotency-key"], /^webhost-cli-/);
  assert.equal(uploads[1].headers["idempotency-key"], uploads[0].headers["idempotency-key"]);
  assert.equal(uploads[1].body, uploads[0].body);
  const body = JSON.parse(uploads[0].body);
  assert.equal(body.mainModuleName, "index.js");
  assert.equal(body.invokePath, "/invoke");
  assert.match(body.modules[0].content, /you said: /);
});

test("a failed deployment prints its errorMessage and exits 1; --no-wait returns at once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "webhost-agent-"));
  await run(["init", dir, "--name", "demo"]);
  handler = (req, _body, res) => {
    if (req.url.startsWith("/v1/agents?")) return send(res, 200, { agents: [agent], nextCursor: null });
    if (req.url === "/v1/agents/agt_1/deploy")
      return send(res, 202, { deployment: { id: "dep_2", status: "deploying" } });
    send(res, 200, {
      deployment: { id: "dep_2", status: "failed", errorMessage: "the default export has no fetch handler" },
    });
  };
  const env = { WEBHOST_API_URL: apiUrl, WEBHOST_API_KEY: KEY };
  const failed = await run(["deploy", dir], { env });
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /error: deployment dep_2 failed: the default export has no fetch handler/);

  requests = [];
  const noWait = await run(["deploy", dir, "--no-wait", "--json"], { env });
  assert.equal(noWait.code, 0, noWait.stderr);
  assert.equal(JSON.parse(noWait.stdout).deployment.status, "deploying");
  assert.equal(requests.filter((q) => q.url.includes("/deployments/")).length, 0);
});

test("invoke --stream prints each delta; the secret value comes from stdin", async () => {
  requests = [];
  handler = (req, body, res) => {
    if (req.url.startsWith("/v1/agents?")) return send(res, 200, { agents: [agent], nextCursor: null });
    if (req.url === "/v1/invoke/agt_1/stream") {
      res.writeHead(200, { "content-type": "text/event-stream", "x-deployment-id": "dep_1", "x-request-id": "req_s" });
      res.write('event: delta\ndata: {"text":"you "}\n\n');
      res.write('event: delta\ndata: {"text":"said"}\n\n');
      res.end(
        `event: done\ndata: ${JSON.stringify({ output: { text: "you said" }, sessionId: JSON.parse(body).sessionId })}\n\n`,
      );
      return;
    }
    if (req.method === "PUT") return send(res, 201, { secret: { name: "GREETING" } });
  };
  const env = { WEBHOST_API_URL: apiUrl, WEBHOST_API_KEY: KEY };
  const human = await run(["invoke", "demo", "hi", "--stream"], { env });
  assert.equal(human.code, 0, human.stderr);
  assert.equal(human.stdout, "you said\n");

  const json = await run(["invoke", "demo", "hi", "--stream", "--session", "s1", "--json"], { env });
  assert.deepEqual(JSON.parse(json.stdout), {
    agentId: "agt_1",
    deploymentId: "dep_1",
    requestId: "req_s",
    replayed: false,
    answer: { output: { text: "you said" }, sessionId: "s1" },
    deltas: ["you ", "said"],
  });

  const secret = await run(["secrets", "set", "demo", "GREETING", "--json"], { env, input: "hello secret\n" });
  assert.equal(secret.code, 0, secret.stderr);
  const put = requests.find((q) => q.method === "PUT");
  assert.equal(put.url, "/v1/agents/agt_1/secrets/GREETING");
  assert.deepEqual(JSON.parse(put.body), { value: "hello secret" });
  assert.equal(JSON.parse(secret.stdout).created, true);
});

const logLine = (id, message, level = "log") => ({
  id,
  ts: `2026-12-01T15:00:0${id}.000Z`,
  level,
  message,
  deploymentId: "dep_1",
  requestId: `req_${id}`,
});

test("logs prints the recent lines oldest first, and --json the page as the API answered it", async () => {
  requests = [];
  handler = (req, _body, res) => {
    if (req.url.startsWith("/v1/agents?")) return send(res, 200, { agents: [agent], nextCursor: null });
    if (req.url.startsWith("/v1/agents/agt_1/logs?")) {
      return send(res, 200, { logs: [logLine(2, "second", "warn"), logLine(1, "first")], nextCursor: null });
    }
  };
  const env = { WEBHOST_API_URL: apiUrl, WEBHOST_API_KEY: KEY };
  const human = await run(["logs", "demo", "--level", "warn", "-q", "sec"], { env });
  assert.equal(human.code, 0, human.stderr);
  assert.equal(
    human.stdout,
    "2026-12-01 15:00:01.000  LOG    dep_1  first\n2026-12-01 15:00:02.000  WARN   dep_1  second\n",
  );
  const url = new URL(requests.at(-1).url, apiUrl);
  assert.equal(url.searchParams.get("level"), "warn");
  assert.equal(url.searchParams.get("q"), "sec");
  assert.equal(url.searchParams.get("limit"), "50");

  const json = await run(["logs", "demo", "--json"], { env });
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(
    JSON.parse(json.stdout).logs.map((l) => l.id),
    [1, 2],
  );
});

test("logs -f follows the stream, reports sampled lines, and resumes after the last line when the stream drops", async () => {
  requests = [];
  let follows = 0;
  handler = (req, _body, res) => {
    if (req.url.startsWith("/v1/agents?")) return send(res, 200, { agents: [agent], nextCursor: null });
    const url = new URL(req.url, apiUrl);
    if (url.pathname !== "/v1/agents/agt_1/logs") return send(res, 404, { title: "no", status: 404 });
    if (url.searchParams.get("follow") !== "1")
      return send(res, 200, { logs: [logLine(2, "recent")], nextCursor: null });
    follows++;
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (follows === 1) {
      // A line, a burst the server did not send, then the connection drops.
      res.write(`id: 3\nevent: log\ndata: ${JSON.stringify(logLine(3, "live"))}\n\n`);
      res.end(`event: sampled\ndata: {"dropped":7}\n\n`);
    } else {
      res.write(`id: 4\nevent: log\ndata: ${JSON.stringify(logLine(4, "after the drop"))}\n\n`);
    }
  };
  const child = spawn(process.execPath, [BIN, "logs", "demo", "-f", "--json"], {
    env: {
      PATH: process.env.PATH,
      WEBHOST_CONFIG_DIR: mkdtempSync(join(tmpdir(), "webhost-cfg-")),
      WEBHOST_API_URL: apiUrl,
      WEBHOST_API_KEY: KEY,
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  child.stdout.on("data", (c) => {
    stdout += c;
  });
  child.stdin.end();
  const deadline = Date.now() + 10_000;
  while (!stdout.includes("after the drop") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  child.kill("SIGTERM");
  const docs = stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    docs.map((d) => d.message ?? d.sampled),
    ["recent", "live", { dropped: 7 }, "after the drop"],
  );
  const followUrls = requests.filter((q) => q.url.includes("follow=1")).map((q) => new URL(q.url, apiUrl));
  assert.equal(followUrls[0].searchParams.get("after"), "2");
  assert.equal(followUrls[1].searchParams.get("after"), "3");
  assert.equal(requests.find((q) => q.url.includes("follow=1")).headers.accept, "text/event-stream");
});
