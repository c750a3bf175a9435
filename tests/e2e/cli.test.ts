// The `webhost` CLI end to end: the real binary (`node cli/bin/webhost.mjs`, spawned as a user
// would run it) against the e2e `wrangler dev`, with an API key created through the API. One
// story in order: login → init → edit (a local npm package and a second file) → deploy → invoke
// (JSON and streamed) → a second deploy → rollback → a secret, deployed and read — every command
// with --json, its document checked and the API asked whether it is true.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../scripts/lib/dev-server.ts";
import { api, e2e, expectJson, newUser, type User } from "./harness";

const BIN = join(PROJECT_ROOT, "cli", "bin", "webhost.mjs");
const STEP_TIMEOUT_MS = 90_000;

type Run = { code: number | null; stdout: string; stderr: string; ms: number };

/** Runs the CLI with stdin piped (so it never prompts) and the given environment. */
function webhost(args: string[], opts: { env: Record<string, string>; input?: string }): Promise<Run> {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...opts.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  child.stdout!.on("data", (c) => out.push(c));
  child.stderr!.on("data", (c) => err.push(c));
  child.stdin!.end(opts.input ?? "");
  const text = (chunks: Uint8Array[]) => {
    const decoder = new TextDecoder();
    return chunks.map((c) => decoder.decode(c, { stream: true })).join("") + decoder.decode();
  };
  return new Promise((resolve) =>
    child.once("close", (code) =>
      resolve({ code, stdout: text(out), stderr: text(err), ms: performance.now() - started }),
    ),
  );
}

/** The one JSON document a --json command printed, after checking it succeeded. */
function doc<T = any>(run: Run): T {
  if (run.code !== 0) throw new Error(`exit ${run.code}\nstderr: ${run.stderr}\nstdout: ${run.stdout}`);
  return JSON.parse(run.stdout) as T;
}

const REPLY_TS = (
  version: string,
) => `// Edited after \`webhost init\`: a local npm package, a second file and a secret.
import shout from "shout";
import { greeting } from "./greeting";
import { countWords, type InvokeRequest, type InvokeResponse } from "./invoke";

export async function reply(request: InvokeRequest, env: Record<string, unknown>): Promise<InvokeResponse> {
  const last = request.messages.findLast((m) => m.role === "user")?.content ?? "";
  const secret = typeof env.GREETING === "string" ? env.GREETING : "none";
  const text = \`${version} \${shout(greeting(last))} secret=\${secret}\`;
  return { output: { text }, ...(request.sessionId ? { sessionId: request.sessionId } : {}), usage: { inputTokens: countWords(last), outputTokens: countWords(text) } };
}
`;

describe("the webhost CLI against wrangler dev", () => {
  let tmp: string;
  let agentDir: string;
  let owner: User;
  let env: Record<string, string>;
  let keyId: string;
  let apiKey: string;
  const name = `cli-e2e-${crypto.randomUUID().slice(0, 8)}`;
  const deployMs: number[] = [];
  let agentId: string;
  let first: string;
  let second: string;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "webhost-cli-e2e-"));
    agentDir = join(tmp, "agent");
    owner = await newUser("cli");
    const created = await expectJson(
      await api("POST", "/v1/api-keys", {
        user: owner,
        body: {
          name: "cli e2e",
          scopes: ["agents:read", "agents:write", "deploy", "invoke", "secrets:write", "usage:read"],
          expiresInDays: 1,
        },
      }),
      201,
    );
    keyId = created.apiKey.id;
    apiKey = created.key;
    // The key is given to `webhost login` below; commands find it in the config file.
    env = { WEBHOST_API_URL: e2e.baseUrl, WEBHOST_CONFIG_DIR: join(tmp, "config") };
  });

  afterAll(() => {
    if (deployMs.length)
      console.log(
        `webhost deploy wall time (command to active): ${deployMs.map((ms) => `${Math.round(ms)} ms`).join(", ")}`,
      );
    rmSync(tmp, { recursive: true, force: true });
  });

  it("login stores the API key (read from stdin) and whoami uses it", async () => {
    const login = doc(await webhost(["login", "--json"], { env, input: `${apiKey}\n` }));
    expect(login).toMatchObject({ apiUrl: e2e.baseUrl, credential: { kind: "apiKey", prefix: apiKey.slice(0, 12) } });
    const stored = JSON.parse(readFileSync(join(tmp, "config", "config.json"), "utf8"));
    expect(stored.credentials[e2e.baseUrl]).toBe(apiKey);
    const who = doc(await webhost(["whoami", "--json"], { env }));
    expect(who).toMatchObject({ apiUrl: e2e.baseUrl, credential: { kind: "apiKey" } });
  });

  it("init scaffolds a TypeScript agent, then it is edited to import a local npm package and a second file", async () => {
    const init = doc(await webhost(["init", agentDir, "--name", name, "--json"], { env }));
    expect(init.files).toEqual(
      expect.arrayContaining(["agent.config.json", "src/index.ts", "src/telemetry.ts", "test/agent.test.ts"]),
    );
    expect(JSON.parse(readFileSync(join(agentDir, "agent.config.json"), "utf8"))).toMatchObject({
      name,
      main: "src/index.ts",
    });

    mkdirSync(join(tmp, "node_modules", "shout"), { recursive: true });
    writeFileSync(
      join(tmp, "node_modules", "shout", "package.json"),
      '{ "name": "shout", "version": "1.0.0", "main": "index.js" }',
    );
    writeFileSync(join(tmp, "node_modules", "shout", "index.js"), "module.exports = (s) => s.toUpperCase() + '!';\n");
    writeFileSync(
      join(agentDir, "src", "greeting.ts"),
      'export const greeting = (who: string): string => "hello " + who;\n',
    );
    writeFileSync(join(agentDir, "src", "reply.ts"), REPLY_TS("v1"));
  });

  it(
    "deploy bundles it, creates the agent and waits until it is active",
    async () => {
      const run = await webhost(["deploy", agentDir, "--json"], { env });
      const result = doc(run);
      deployMs.push(run.ms);
      expect(result.agent).toMatchObject({ name, created: true });
      expect(result.deployment.status).toBe("active");
      expect(result.bundle.mainModuleName).toBe("index.js");
      expect(result.bundle.format).toBe("modules");
      expect(run.stderr).toMatch(
        /bundling src\/index\.ts…[\s\S]*uploading 1 module \([\d.]+ KB[\s\S]*deploying dep_[\s\S]*active in/,
      );
      agentId = result.agent.id;
      first = result.deployment.id;
      const { agent } = await expectJson(await api("GET", `/v1/agents/${agentId}`, { user: owner }), 200);
      expect(agent.activeDeploymentId).toBe(first);
    },
    STEP_TIMEOUT_MS,
  );

  it("invoke answers as JSON, by name and by id", async () => {
    const byName = doc(await webhost(["invoke", name, "the team", "--session", "s-1", "--json"], { env }));
    expect(byName).toMatchObject({
      agentId,
      deploymentId: first,
      answer: { output: { text: "v1 HELLO THE TEAM! secret=none" }, sessionId: "s-1" },
    });
    expect(byName.requestId).toMatch(/^req_/);
    const byId = doc(await webhost(["invoke", agentId, "you", "--json"], { env }));
    expect(byId.answer.output.text).toBe("v1 HELLO YOU! secret=none");
  });

  it("invoke --stream prints the deltas, and with --json returns them and the done answer", async () => {
    const human = await webhost(["invoke", name, "stream me", "--stream"], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toBe("v1 HELLO STREAM ME! secret=none\n");
    const json = doc(await webhost(["invoke", name, "stream me", "--stream", "--json"], { env }));
    expect(json.deltas.length).toBeGreaterThan(1);
    expect(json.deltas.join("")).toBe("v1 HELLO STREAM ME! secret=none");
    expect(json.answer.output.text).toBe("v1 HELLO STREAM ME! secret=none");
  });

  it(
    "a second deploy goes active; rollback returns to the first",
    async () => {
      writeFileSync(join(agentDir, "src", "reply.ts"), REPLY_TS("v2"));
      const run = await webhost(["deploy", agentDir, "--json"], { env });
      const result = doc(run);
      deployMs.push(run.ms);
      expect(result.agent).toMatchObject({ id: agentId, created: false });
      second = result.deployment.id;
      expect(second).not.toBe(first);
      expect(doc(await webhost(["invoke", name, "x", "--json"], { env })).answer.output.text).toBe(
        "v2 HELLO X! secret=none",
      );

      const rolled = doc(await webhost(["rollback", name, "--json"], { env }));
      expect(rolled).toMatchObject({ previousDeploymentId: second, deployment: { id: first, status: "active" } });
      const again = doc(await webhost(["invoke", name, "x", "--json"], { env }));
      expect(again).toMatchObject({ deploymentId: first, answer: { output: { text: "v1 HELLO X! secret=none" } } });

      const list = doc(await webhost(["deployments", name, "--json"], { env }));
      expect(list.deployments.map((d: any) => [d.id, d.status])).toEqual([
        [second, "inactive"],
        [first, "active"],
      ]);
    },
    STEP_TIMEOUT_MS,
  );

  it(
    "secrets set reads the value from stdin; the next deploy reads it",
    async () => {
      const set = doc(await webhost(["secrets", "set", name, "GREETING", "--json"], { env, input: "s3cret value\n" }));
      expect(set).toMatchObject({ agentId, created: true });
      const list = doc(await webhost(["secrets", "list", name, "--json"], { env }));
      expect(list.secrets.map((s: any) => s.name)).toEqual(["GREETING"]);
      expect(JSON.stringify(list)).not.toContain("s3cret");

      const run = await webhost(["deploy", agentDir, "--json"], { env });
      doc(run);
      deployMs.push(run.ms);
      expect(doc(await webhost(["invoke", name, "x", "--json"], { env })).answer.output.text).toBe(
        "v2 HELLO X! secret=s3cret value",
      );
    },
    STEP_TIMEOUT_MS,
  );

  it(
    "a text module, nodejs_compat and a smoke test deploy as a multi-module bundle",
    async () => {
      const dir = join(tmp, "assets");
      const assetsName = `${name}-assets`;
      doc(await webhost(["init", dir, "--name", assetsName, "--json"], { env }));
      writeFileSync(join(dir, "src", "prompt.txt"), "from a text module");
      writeFileSync(
        join(dir, "src", "reply.ts"),
        `import { Buffer } from "node:buffer";
import prompt from "./prompt.txt";
export async function reply() { return { output: { text: prompt + " " + Buffer.from("hi").toString("base64") } }; }
`,
      );
      const config = JSON.parse(readFileSync(join(dir, "agent.config.json"), "utf8"));
      const smokeTest = { request: { messages: [{ role: "user", content: "ping" }] } };
      writeFileSync(
        join(dir, "agent.config.json"),
        JSON.stringify({ ...config, compatibilityFlags: ["nodejs_compat"], smokeTest }),
      );
      const result = doc(await webhost(["deploy", dir, "--json"], { env }));
      expect(result.bundle).toMatchObject({
        format: "modules",
        modules: [
          { name: "index.js", type: "esm" },
          { name: "src/prompt.txt", type: "text" },
        ],
      });
      expect(result.deployment.status).toBe("active");
      const answer = doc(await webhost(["invoke", assetsName, "x", "--json"], { env }));
      expect(answer.answer.output.text).toBe("from a text module aGk=");
    },
    STEP_TIMEOUT_MS,
  );

  it("usage reports the invocations; keys need a user token, and errors carry title, detail and requestId", async () => {
    const usage = doc(await webhost(["usage", "--json"], { env }));
    expect(usage.agents.find((a: any) => a.agentId === agentId)).toBeDefined();

    const refused = await webhost(["keys", "list", "--json"], { env });
    expect(refused.code).toBe(1);
    const { error } = JSON.parse(refused.stdout);
    expect(error).toMatchObject({ status: 403, code: "user_token_required" });
    expect(refused.stderr).toContain(`error: ${error.title}\n  ${error.detail}\n`);
    expect(refused.stderr).toMatch(new RegExp(`requestId ${error.requestId}`));

    const withToken = { ...env, WEBHOST_API_KEY: owner.token };
    const keys = doc(await webhost(["keys", "list", "--json"], { env: withToken }));
    expect(keys.apiKeys.map((k: any) => k.id)).toContain(keyId);
    const made = doc(
      await webhost(["keys", "create", "--name", "ci", "--scope", "invoke", "--agent", name, "--json"], {
        env: withToken,
      }),
    );
    expect(made.apiKey).toMatchObject({ scopes: ["invoke"], agentIds: [agentId] });
    const revoked = doc(await webhost(["keys", "revoke", made.apiKey.id, "--json"], { env: withToken }));
    expect(revoked).toEqual({ id: made.apiKey.id, revoked: true });
  });
});
