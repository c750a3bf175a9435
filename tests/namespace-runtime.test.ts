// The namespace mechanism against a fake Cloudflare API (which checks each request the way
// Cloudflare documents it) and a fake DISPATCHER.
import { afterEach, describe, expect, it, vi } from "vitest";
import { fromBase64 } from "../src/crypto/encoding";
import { ConfigError } from "../src/lib/config-error";
import { classifyDispatchError } from "../src/runtime/namespace/errors";
import { createNamespaceRuntime } from "../src/runtime/namespace/provider";
import { namespaceUpload } from "../src/runtime/namespace/upload";
import { RuntimeError, type RuntimeModule } from "../src/runtime/types";
import {
  NO_FETCH_HANDLER_MESSAGE,
  PLATFORM_MAIN_MODULE,
  plainUserEnv,
  platformMainModule,
  secretUserEnv,
} from "../src/runtime/user-script";
import { ADD_WASM, multiModuleBundle, toBase64 } from "./fixtures/bundle";
import {
  API_TOKEN,
  fakeDispatcher,
  INVOKE_TIMEOUT_MS,
  makeBundle,
  NAMESPACE,
  namespaceEnv,
  namespaceSetup,
  USER_MODULE,
} from "./helpers/namespace";

async function runtimeError(promise: Promise<unknown>): Promise<RuntimeError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RuntimeError);
  return err as RuntimeError;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("namespace runtime: deploy", () => {
  it("uploads the user's ES module under the platform's main module, with the deployment's bindings and tags", async () => {
    const { api, runtime } = namespaceSetup();
    const bundle = makeBundle();
    await runtime.deploy(bundle);

    expect(api.requests).toHaveLength(1);
    expect(api.requests[0]).toMatchObject({
      method: "PUT",
      path: `/accounts/0123456789abcdef0123456789abcdef/workers/dispatch/namespaces/${NAMESPACE}/scripts/${bundle.scriptName}`,
      status: 200,
    });
    const script = api.scripts.get(bundle.scriptName);
    expect(script).toBeDefined();
    expect(script?.modules).toEqual([
      {
        name: PLATFORM_MAIN_MODULE,
        contentType: "application/javascript+module",
        content: platformMainModule("index.mjs"),
      },
      { name: "index.mjs", contentType: "application/javascript+module", content: USER_MODULE },
    ]);
    // The platform's main module re-exports the user's default export and refuses one without fetch.
    expect(platformMainModule("index.mjs")).toContain('import handler from "./index.mjs";');
    expect(platformMainModule("index.mjs")).toContain("export default handler;");
    expect(script?.metadata).toEqual({
      main_module: PLATFORM_MAIN_MODULE,
      compatibility_date: "2026-08-01",
      compatibility_flags: [],
      bindings: [
        {
          type: "service",
          name: "TELEMETRY",
          service: "webhost-gateway",
          entrypoint: "TelemetrySink",
          props: { userId: bundle.userId, agentId: bundle.agentId, deploymentId: bundle.deploymentId },
        },
        { type: "plain_text", name: "USER_ID", text: bundle.userId },
        { type: "plain_text", name: "AGENT_ID", text: bundle.agentId },
        { type: "plain_text", name: "DEPLOYMENT_ID", text: bundle.deploymentId },
        { type: "plain_text", name: "RUNTIME_PROVIDER", text: "cloudflare" },
        { type: "secret_text", name: "OPENAI_API_KEY", text: bundle.secrets.OPENAI_API_KEY },
        { type: "secret_text", name: "WEBHOOK_TOKEN", text: bundle.secrets.WEBHOOK_TOKEN },
        { type: "secret_text", name: "TELEMETRY_SECRET", text: bundle.telemetrySecret },
      ],
      tags: [`user-${bundle.userId}`, `agent-${bundle.agentId}`, `deployment-${bundle.deploymentId}`],
      tail_consumers: [{ service: "webhost-gateway" }],
    });
  });

  it("makes the gateway the script's tail consumer, under the configured gateway service name", async () => {
    const { api, runtime } = namespaceSetup({ env: { GATEWAY_SERVICE_NAME: "gateway-eu" } });
    const bundle = makeBundle();
    await runtime.deploy(bundle);
    expect(api.scripts.get(bundle.scriptName)?.metadata.tail_consumers).toEqual([{ service: "gateway-eu" }]);
  });

  it("binds TELEMETRY to the configured gateway service name", async () => {
    const { api, runtime } = namespaceSetup({ env: { GATEWAY_SERVICE_NAME: "gateway-eu" } });
    const bundle = makeBundle();
    await runtime.deploy(bundle);
    const telemetry = api.scripts.get(bundle.scriptName)?.metadata.bindings?.find((b) => b.name === "TELEMETRY");
    expect(telemetry).toMatchObject({ type: "service", service: "gateway-eu", entrypoint: "TelemetrySink" });
  });

  it("gives the user script the same environment as the loader mechanism", async () => {
    // The loader passes `{ ...plainUserEnv(bundle), ...secretUserEnv(bundle), TELEMETRY }` as env
    // with TELEMETRY = ctx.exports.TelemetrySink({ props: identity }); the upload must carry
    // exactly those names and values, each with the right visibility.
    const { api, runtime } = namespaceSetup();
    const bundle = makeBundle({ secrets: { A_KEY: "secret-value-a-123", B_KEY: "secret-value-b-456" } });
    await runtime.deploy(bundle);
    const bindings = api.scripts.get(bundle.scriptName)?.metadata.bindings ?? [];

    const byType = (type: string) =>
      Object.fromEntries(bindings.filter((b) => b.type === type).map((b) => [b.name, b.text as string]));
    expect(byType("plain_text")).toEqual(plainUserEnv(bundle));
    expect(byType("secret_text")).toEqual(secretUserEnv(bundle));
    const loaderEnvNames = Object.keys({ ...plainUserEnv(bundle), ...secretUserEnv(bundle), TELEMETRY: null }).sort();
    expect(bindings.map((b) => b.name).sort()).toEqual(loaderEnvNames);
    expect(bindings.find((b) => b.name === "TELEMETRY")?.props).toEqual({
      userId: bundle.userId,
      agentId: bundle.agentId,
      deploymentId: bundle.deploymentId,
    });
  });

  it("never lets an agent secret shadow an identity value or TELEMETRY", () => {
    const bundle = makeBundle({ secrets: { USER_ID: "forged-user", TELEMETRY: "forged", OK_KEY: "value-1234" } });
    const { metadata } = namespaceUpload(bundle, "webhost-gateway");
    const named = (name: string) => metadata.bindings.filter((b) => b.name === name);
    expect(named("USER_ID")).toEqual([{ type: "plain_text", name: "USER_ID", text: bundle.userId }]);
    expect(named("TELEMETRY")).toHaveLength(1);
    expect(named("TELEMETRY")[0]?.type).toBe("service");
    expect(named("OK_KEY")).toEqual([{ type: "secret_text", name: "OK_KEY", text: "value-1234" }]);
  });

  it("keeps the token and secret values out of URLs, plain_text bindings and every log line", async () => {
    const lines: string[] = [];
    for (const method of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        lines.push(args.map(String).join(" "));
      });
    }
    const { api, runtime } = namespaceSetup();
    const bundle = makeBundle();
    await runtime.deploy(bundle);
    api.inject({ method: "PUT", status: 500, errors: [{ code: 10002, message: "internal error" }] });
    const err = await runtimeError(runtime.deploy(makeBundle({ secrets: bundle.secrets })));

    const secretValues = [API_TOKEN, bundle.telemetrySecret, ...Object.values(bundle.secrets)];
    const seen = [...lines, ...api.requests.map((r) => `${r.path}?${r.query} ${r.summary ?? ""} ${r.error ?? ""}`)];
    seen.push(err.message, String(err.cause));
    for (const value of secretValues) {
      for (const text of seen) expect(text).not.toContain(value);
    }
    const plain = (api.scripts.get(bundle.scriptName)?.metadata.bindings ?? []).filter((b) => b.type === "plain_text");
    for (const b of plain) expect(secretValues).not.toContain(b.text);
  });

  it("is rejected by the fake like Cloudflare when the upload is malformed, keeping Cloudflare's message", async () => {
    const { runtime } = namespaceSetup();
    // A binding name that is not a JavaScript identifier fails Cloudflare's validation (10021).
    const err = await runtimeError(runtime.deploy(makeBundle({ secrets: { "bad-name": "value-12345678" } })));
    expect(err).toMatchObject({ code: "load_failed", retryable: false });
    expect(err.message).toContain("HTTP 400");
    expect(err.message).toContain("bindings[");
    expect(err.message).toContain("code 10021");
  });

  it.each([
    { label: "a script Cloudflare rejects (400)", status: 400, code: 10021, expected: "load_failed", retryable: false },
    { label: "a forbidden token (403)", status: 403, code: 10000, expected: "load_failed", retryable: false },
    { label: "a missing resource (404)", status: 404, code: 10007, expected: "load_failed", retryable: false },
    { label: "rate limiting (429)", status: 429, code: 971, expected: "unavailable", retryable: true },
    { label: "an internal error (500)", status: 500, code: 10002, expected: "unavailable", retryable: true },
    { label: "an overloaded API (503)", status: 503, code: 10013, expected: "unavailable", retryable: true },
  ])(
    "classifies $label as retryable=$retryable and keeps the message",
    async ({ status, code, expected, retryable }) => {
      const { api, runtime } = namespaceSetup();
      const message = `Cloudflare says ${status}-${code}`;
      api.inject({ method: "PUT", status, errors: [{ code, message }] });
      const err = await runtimeError(runtime.deploy(makeBundle()));
      expect(err).toMatchObject({ code: expected, retryable });
      expect(err.message).toContain(message);
      expect(err.message).toContain(`code ${code}`);
      expect(err.message).toContain(`HTTP ${status}`);
    },
  );

  it("fails without retry when the token is wrong (401 from Cloudflare)", async () => {
    const { runtime } = namespaceSetup({ env: { CLOUDFLARE_API_TOKEN: "not-the-token" } });
    const err = await runtimeError(runtime.deploy(makeBundle()));
    expect(err).toMatchObject({ code: "load_failed", retryable: false });
    expect(err.message).toContain("Authentication error (code 10000)");
    expect(err.message).not.toContain("not-the-token");
  });

  it("fails without retry when the namespace does not exist", async () => {
    const { runtime } = namespaceSetup({ env: { DISPATCH_NAMESPACE: "no-such-namespace" } });
    const err = await runtimeError(runtime.deploy(makeBundle()));
    expect(err).toMatchObject({ code: "load_failed", retryable: false });
    expect(err.message).toContain("HTTP 404");
  });

  it("retries when a proxy answers 502 with an HTML page instead of an envelope", async () => {
    const { api, runtime } = namespaceSetup();
    api.inject({ method: "PUT", status: 502, rawBody: "<html>Bad gateway</html>" });
    const err = await runtimeError(runtime.deploy(makeBundle()));
    expect(err).toMatchObject({ code: "unavailable", retryable: true });
    expect(err.message).toContain("HTTP 502");
  });

  it("retries after a network error", async () => {
    const { api, runtime } = namespaceSetup();
    api.inject({ method: "PUT", networkError: "connection reset by peer" });
    const err = await runtimeError(runtime.deploy(makeBundle()));
    expect(err).toMatchObject({ code: "unavailable", retryable: true });
    expect(err.message).toContain("connection reset by peer");
  });

  it("gives up on an API call after CLOUDFLARE_API_TIMEOUT_MS and marks it retryable", async () => {
    const { api, runtime } = namespaceSetup({ env: { CLOUDFLARE_API_TIMEOUT_MS: "100" } });
    api.inject({ method: "PUT", hang: true });
    const err = await runtimeError(runtime.deploy(makeBundle()));
    expect(err).toMatchObject({ code: "unavailable", retryable: true });
    expect(err.message).toContain("timeout: no answer within 100 ms");
  });
});

describe("namespace runtime: configuration", () => {
  const runtimeWith = (overrides: Parameters<typeof namespaceEnv>[0]) =>
    createNamespaceRuntime({ env: namespaceEnv(overrides), invokeTimeoutMs: INVOKE_TIMEOUT_MS });

  it("refuses to start without the account id, the token and the namespace, naming each", () => {
    expect(() => runtimeWith({ CLOUDFLARE_ACCOUNT_ID: "", CLOUDFLARE_API_TOKEN: undefined })).toThrow(ConfigError);
    expect(() => runtimeWith({ CLOUDFLARE_API_TOKEN: undefined })).toThrow(/CLOUDFLARE_API_TOKEN/);
    expect(() => runtimeWith({ CLOUDFLARE_ACCOUNT_ID: "acct" })).toThrow(
      /CLOUDFLARE_ACCOUNT_ID: must be a 32-character hex id/,
    );
    expect(() => runtimeWith({ DISPATCH_NAMESPACE: "" })).toThrow(/DISPATCH_NAMESPACE is required/);
  });

  it("never echoes the token in a configuration error", () => {
    let message = "";
    try {
      runtimeWith({ CLOUDFLARE_API_BASE_URL: "not a url" });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain("CLOUDFLARE_API_BASE_URL");
    expect(message).not.toContain(API_TOKEN);
  });
});

describe("namespace runtime: invoke", () => {
  const target = (scriptName = "webhost-dep-x") => ({
    deploymentId: "dep_x",
    userId: "usr_x",
    agentId: "agt_x",
    scriptName,
    loadBundle: () => Promise.reject(new Error("the namespace mechanism never loads code at invoke time")),
  });
  const invokeRequest = () =>
    new Request("https://agent.internal/invoke", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
    });

  it("dispatches to the deployment's script with the tier's limits and passes the response through", async () => {
    const dispatcher = fakeDispatcher(async (_name, request) => {
      const body = (await request.json()) as { messages: Array<{ content: string }> };
      return Response.json({ output: { text: `echo: ${body.messages[0]?.content}` } }, { headers: { "x-agent": "1" } });
    });
    const { runtime } = namespaceSetup({ dispatcher });
    const request = invokeRequest();
    request.headers.set("x-request-id", "req_invocation");
    const res = await runtime.invoke(target("webhost-dep-abc"), request, {
      limits: { cpuMs: 50, subRequests: 10 },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-agent")).toBe("1");
    expect(await res.json()).toEqual({ output: { text: "echo: hi" } });
    expect(dispatcher.calls).toEqual([
      {
        name: "webhost-dep-abc",
        args: {},
        options: {
          limits: { cpuMs: 50, subRequests: 10 },
          // The egress door (the namespace's outbound Worker) learns who is calling from this.
          outbound: {
            webhost_egress: {
              userId: "usr_x",
              agentId: "agt_x",
              deploymentId: "dep_x",
              invocationId: "req_invocation",
            },
          },
        },
      },
    ]);
  });

  it("passes an error status from the agent through unchanged (it is the agent's answer)", async () => {
    const { runtime } = namespaceSetup({
      dispatcher: fakeDispatcher(async () => new Response("nope", { status: 418 })),
    });
    const res = await runtime.invoke(target(), invokeRequest(), { limits: { cpuMs: 10, subRequests: 5 } });
    expect(res.status).toBe(418);
  });

  it("maps 'Worker not found' from get() and from fetch() to script_not_found", async () => {
    const fromGet = namespaceSetup({
      dispatcher: {
        get() {
          throw new Error("Worker not found.");
        },
      },
    });
    const a = await runtimeError(
      fromGet.runtime.invoke(target(), invokeRequest(), { limits: { cpuMs: 1, subRequests: 1 } }),
    );
    expect(a).toMatchObject({ code: "script_not_found", retryable: false });

    const fromFetch = namespaceSetup({
      dispatcher: fakeDispatcher(() => Promise.reject(new Error("Worker not found: webhost-dep-x"))),
    });
    const b = await runtimeError(
      fromFetch.runtime.invoke(target(), invokeRequest(), { limits: { cpuMs: 1, subRequests: 1 } }),
    );
    expect(b).toMatchObject({ code: "script_not_found", retryable: false });
  });

  it.each([
    ["Worker exceeded CPU time limit."],
    ["Too many subrequests by single Worker invocation."],
    ["Worker has exceeded memory limit."],
  ])("maps %j to limit_exceeded", async (message) => {
    const { runtime } = namespaceSetup({ dispatcher: fakeDispatcher(() => Promise.reject(new Error(message))) });
    const err = await runtimeError(runtime.invoke(target(), invokeRequest(), { limits: { cpuMs: 5, subRequests: 2 } }));
    expect(err).toMatchObject({ code: "limit_exceeded", retryable: false });
  });

  it("maps anything else the user worker throws to exception, keeping its message", async () => {
    const { runtime } = namespaceSetup({
      dispatcher: fakeDispatcher(() => Promise.reject(new TypeError("Cannot read properties of undefined"))),
    });
    const err = await runtimeError(runtime.invoke(target(), invokeRequest(), { limits: { cpuMs: 5, subRequests: 2 } }));
    expect(err).toMatchObject({ code: "exception", retryable: false });
    expect(err.message).toContain("Cannot read properties of undefined");
  });

  it("times out after INVOKE_TIMEOUT_MS and aborts the request to the agent", async () => {
    let seen: Request | undefined;
    const dispatcher = fakeDispatcher((_name, request) => {
      seen = request;
      return new Promise<Response>(() => {});
    });
    const { runtime } = namespaceSetup({ invokeTimeoutMs: 100, dispatcher });
    const err = await runtimeError(runtime.invoke(target(), invokeRequest(), { limits: { cpuMs: 5, subRequests: 2 } }));
    expect(err).toMatchObject({ code: "timeout", retryable: false });
    expect(err.message).toContain("100 ms");
    expect(seen?.signal.aborted).toBe(true);
  });

  it("reports a namespace that cannot run here (wrangler dev) as unavailable, not as the agent's fault", () => {
    const err = classifyDispatchError(new Error("Binding DISPATCHER needs to be run remotely"), "s");
    expect(err).toMatchObject({ code: "unavailable", retryable: false });
  });

  it("gives four distinct codes for the four failure kinds", () => {
    const codes = [
      classifyDispatchError(new Error("Worker not found."), "s").code,
      classifyDispatchError(new Error("Worker exceeded CPU time limit."), "s").code,
      classifyDispatchError(new Error("boom"), "s").code,
      new RuntimeError("timeout", "t", false).code,
    ];
    expect(new Set(codes).size).toBe(4);
  });
});

describe("namespace runtime: remove", () => {
  it("deletes the named scripts and treats an absent one as already removed", async () => {
    const { api, runtime } = namespaceSetup();
    const a = makeBundle();
    const b = makeBundle();
    await runtime.deploy(a);
    await runtime.deploy(b);
    await runtime.remove([a.scriptName, "webhost-dep-never-uploaded"]);
    expect([...api.scripts.keys()]).toEqual([b.scriptName]);
    expect(api.requests.filter((r) => r.method === "DELETE").map((r) => r.status)).toEqual([200, 404]);
  });

  it("reports a wrong account as an error instead of pretending the script is gone", async () => {
    const { runtime } = namespaceSetup({ env: { CLOUDFLARE_ACCOUNT_ID: "ffffffffffffffffffffffffffffffff" } });
    const err = await runtimeError(runtime.remove(["webhost-dep-x"]));
    expect(err).toMatchObject({ code: "load_failed", retryable: false });
    expect(err.message).toContain("code 7003");
  });

  it("deletes every script carrying a tag, page after page, and only those", async () => {
    const { api, runtime } = namespaceSetup({ deletePageSize: 2 });
    const agentId = "agt_01jabcdefghjkmnpqrstvwxyz0";
    for (let i = 0; i < 5; i++) await runtime.deploy(makeBundle({ agentId }));
    const other = makeBundle();
    await runtime.deploy(other);

    expect(await runtime.removeAgentScripts(agentId)).toBe(5);
    expect([...api.scripts.keys()]).toEqual([other.scriptName]);
    const bulk = api.requests.filter((r) => r.method === "DELETE");
    expect(bulk).toHaveLength(3);
    for (const r of bulk) {
      expect(r.path).toBe(
        `/accounts/0123456789abcdef0123456789abcdef/workers/dispatch/namespaces/${NAMESPACE}/scripts`,
      );
      expect(new URLSearchParams(r.query).get("tags")).toBe(`agent-${agentId}:yes`);
    }
  });
});

describe("namespace runtime: bundles", () => {
  const runtimeModules = (): RuntimeModule[] =>
    multiModuleBundle().modules.map((m) =>
      m.encoding === "base64"
        ? { name: m.name, type: m.type as "data" | "wasm", content: fromBase64(m.content) }
        : { name: m.name, type: m.type as "esm" | "cjs" | "text" | "json", content: m.content },
    );

  it("uploads every module as its own part with its content type, and the flags in the metadata", async () => {
    const { api, runtime } = namespaceSetup();
    const bundle = makeBundle({
      mainModuleName: "src/index.js",
      modules: runtimeModules(),
      compatibilityFlags: ["nodejs_compat"],
    });
    await runtime.deploy(bundle);
    const script = api.scripts.get(bundle.scriptName);
    expect(script?.metadata).toMatchObject({
      main_module: PLATFORM_MAIN_MODULE,
      compatibility_flags: ["nodejs_compat"],
    });
    expect(script?.modules[0]?.content).toContain('import handler from "./src/index.js";');
    expect(script?.modules.map((m) => [m.name, m.contentType])).toEqual([
      [PLATFORM_MAIN_MODULE, "application/javascript+module"],
      ["src/index.js", "application/javascript+module"],
      ["src/lib/greet.js", "application/javascript+module"],
      ["src/lib/counter.cjs", "application/javascript"],
      ["src/config.json", "application/json"],
      ["src/prompt.txt", "text/plain"],
      ["src/add.wasm", "application/wasm"],
      ["src/blob.bin", "application/octet-stream"],
    ]);
    // The bytes arrive intact: the fake keeps binary parts as base64.
    expect(script?.modules.find((m) => m.name === "src/add.wasm")?.content).toBe(toBase64(ADD_WASM));
    expect(script?.modules.find((m) => m.name === "src/prompt.txt")?.content).toBe("be brief\n");
  });

  it("fails a bundle importing a module it lacks with the same message as the loader", async () => {
    const { runtime } = namespaceSetup();
    const bundle = makeBundle({
      mainModuleName: "index.js",
      modules: [
        { name: "index.js", type: "esm", content: `import { ask } from "./lib/x.js"; export default { fetch: ask };` },
        {
          name: "lib/x.js",
          type: "esm",
          content: `import OpenAI from "openai"; export const ask = () => new OpenAI();`,
        },
      ],
    });
    const err = await runtimeError(runtime.deploy(bundle));
    expect(err).toMatchObject({ code: "load_failed", retryable: false });
    expect(err.message).toBe(
      "module `lib/x.js` imports `openai` (resolved as `lib/openai`), which is not in the bundle: bundle your dependencies (e.g. with esbuild or wrangler) or fix the import path",
    );
  });

  it("reads Cloudflare's startup failure of a default export without fetch as the loader's message", async () => {
    const { api, runtime } = namespaceSetup();
    // What Cloudflare answers when the platform's main module throws at the top level.
    api.inject({
      method: "PUT",
      status: 400,
      errors: [{ code: 10021, message: `Uncaught Error: ${NO_FETCH_HANDLER_MESSAGE}\n  at __webhost_main.mjs:4:42` }],
    });
    const err = await runtimeError(runtime.deploy(makeBundle()));
    expect(err).toMatchObject({ code: "load_failed", retryable: false, message: NO_FETCH_HANDLER_MESSAGE });
  });

  it("refuses node: imports without nodejs_compat, and accepts them with it", async () => {
    const { runtime } = namespaceSetup();
    const modules: RuntimeModule[] = [
      {
        name: "index.mjs",
        type: "esm",
        content: `import { Buffer } from "node:buffer"; export default { fetch() {} };`,
      },
    ];
    await expect(runtime.deploy(makeBundle({ modules }))).rejects.toMatchObject({ code: "load_failed" });
    await runtime.deploy(makeBundle({ modules, compatibilityFlags: ["nodejs_compat"] }));
  });
});
