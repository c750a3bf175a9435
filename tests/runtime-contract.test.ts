// The runtime provider contract (src/runtime/types.ts), written once and run against every
// provider, so they cannot drift apart:
//   loader     the Worker Loader, as local runs and tests use it;
//   host       the Worker Loader in the agent host Worker (src/agent-host/, DISPATCH_MODE=host), reached
//              over a real RPC service binding (vitest.config.ts bundles the host as an auxiliary worker);
//   namespace  the dispatch namespace mechanism against the fake Cloudflare API; its dispatcher
//              loads the script the fake API stored (so the uploaded bytes are what runs);
//   agentcore  the AgentCore provider against the fake AWS (tests/setup/fake-aws-global.ts), which
//              runs the packaged Node wrapper in a child process.
// Each: deploy, invoke JSON (with its env), invoke a stream (incremental), an agent that throws,
// an agent that hangs (bounded by the deadline), remove. docs/runtimes.md lists the differences
// these tests allow (who enforces the timeout, whether a removed deployment is observable).
import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { collectSse } from "../scripts/lib/sse.ts";
import { createAgentCoreRuntime } from "../src/runtime/agentcore/provider";
import type { AgentHostApi } from "../src/runtime/host/protocol";
import { createHostRuntime } from "../src/runtime/host/provider";
import { createLoaderRuntime } from "../src/runtime/loader";
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeProvider,
  type RuntimeProviderName,
} from "../src/runtime/types";
import { contractAgent } from "./fixtures/modules";
import { fakeDispatcher, makeBundle, namespaceSetup } from "./helpers/namespace";
import "./setup/fake-aws-context.ts";

/** The provider's own invoke timeout, where it has one. */
const INVOKE_TIMEOUT_MS = 1_500;
/** The caller's deadline (the gateway's beforeDeadline in services/invoke): the bound for every provider. */
const DEADLINE_MS = 4_000;
const DELTA_GAP_MS = 200;
const SECRET = `contract-secret-${crypto.randomUUID()}`;

const AGENT = contractAgent({
  deltas: ["a ", "b ", "c"],
  deltaGapMs: DELTA_GAP_MS,
  throwMessage: "contract boom",
  hangMs: 60_000,
  answer: `{
    output: { text },
    env: { DEPLOYMENT_ID: env.DEPLOYMENT_ID, RUNTIME_PROVIDER: env.RUNTIME_PROVIDER, CONTRACT_SECRET: env.CONTRACT_SECRET },
  }`,
});

type Subject = {
  name: string;
  provider: RuntimeProviderName;
  make(): RuntimeProvider;
  /** The provider bounds an invocation itself (RuntimeError "timeout"); the loader relies on the caller's deadline. */
  ownTimeout: boolean;
  /** After remove, an invoke fails with script_not_found (the loader keeps nothing to remove). */
  removeObservable: boolean;
};

/** A dispatcher that runs what the fake Cloudflare API stored, through the Worker Loader, as Workers for Platforms would. */
function loadingDispatcher(api: ReturnType<typeof namespaceSetup>["api"]) {
  return fakeDispatcher(async (name, request) => {
    const script = api.scripts.get(name);
    if (!script) throw new Error(`Worker not found: ${name}`);
    const envOf: Record<string, string> = {};
    for (const b of script.metadata.bindings ?? []) {
      if (b.type === "plain_text" || b.type === "secret_text") envOf[b.name] = b.text;
    }
    const stub = env.LOADER!.get(`contract-ns-${name}-${script.etag}`, () => ({
      compatibilityDate: script.metadata.compatibility_date ?? "2026-08-01",
      mainModule: script.metadata.main_module,
      modules: Object.fromEntries(script.modules.map((m) => [m.name, { js: m.content }])),
      env: envOf,
      globalOutbound: null,
    }));
    return stub.getEntrypoint().fetch(request);
  });
}

const subjects: Subject[] = [
  {
    name: "loader",
    provider: "cloudflare",
    make: () => createLoaderRuntime(env.LOADER!, () => env.FAKE_TELEMETRY),
    ownTimeout: false,
    removeObservable: false,
  },
  {
    name: "host (agent host Worker over RPC)",
    provider: "cloudflare",
    make: () => createHostRuntime(env.AGENT_HOST as unknown as AgentHostApi, { invokeTimeoutMs: INVOKE_TIMEOUT_MS }),
    ownTimeout: false,
    removeObservable: false,
  },
  {
    name: "namespace (fake Cloudflare API)",
    provider: "cloudflare",
    make() {
      let dispatcher: ReturnType<typeof loadingDispatcher> | undefined;
      const setup = namespaceSetup({
        invokeTimeoutMs: INVOKE_TIMEOUT_MS,
        dispatcher: { get: (...args) => (dispatcher as NonNullable<typeof dispatcher>).get(...args) },
      });
      dispatcher = loadingDispatcher(setup.api);
      return setup.runtime;
    },
    ownTimeout: true,
    removeObservable: true,
  },
  {
    name: "agentcore (fake AWS)",
    provider: "agentcore",
    make() {
      const aws = inject("fakeAws");
      return createAgentCoreRuntime({
        env: {
          AGENTCORE_REGION: aws.region,
          AGENTCORE_ROLE_ARN: "arn:aws:iam::123456789012:role/contract",
          AGENTCORE_ARTIFACT_BUCKET: "webhost-contract",
          AWS_ACCESS_KEY_ID: aws.accessKeyId,
          AWS_SECRET_ACCESS_KEY: aws.secretAccessKey,
          AGENTCORE_CONTROL_ENDPOINT: aws.controlEndpoint,
          AGENTCORE_DATA_ENDPOINT: aws.dataEndpoint,
          AGENTCORE_S3_ENDPOINT: aws.s3Endpoint,
          GATEWAY_PUBLIC_URL: "http://gateway.test",
        },
        invokeTimeoutMs: INVOKE_TIMEOUT_MS,
        firstPollMs: 100,
      });
    },
    ownTimeout: true,
    removeObservable: true,
  },
];

function targetOf(bundle: DeploymentBundle): InvokeTarget {
  return {
    deploymentId: bundle.deploymentId,
    runtimeProvider: bundle.runtimeProvider,
    userId: bundle.userId,
    agentId: bundle.agentId,
    scriptName: bundle.scriptName,
    loadBundle: async () => bundle,
  };
}

function requestOf(content: string, stream = false): Request {
  return new Request("http://agent.internal/invoke", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: stream ? "text/event-stream" : "application/json",
      "x-request-id": `req_contract_${crypto.randomUUID()}`,
    },
    body: JSON.stringify({ messages: [{ role: "user", content }] }),
  });
}

/** The caller's deadline, as services/invoke applies it: the call rejects by then whatever the provider does. */
async function withDeadline(work: Promise<Response>): Promise<Response> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("caller deadline")), DEADLINE_MS);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

for (const subject of subjects) {
  describe(`runtime provider contract: ${subject.name}`, () => {
    const runtime = subject.make();
    const bundle = makeBundle({
      runtimeProvider: subject.provider,
      mainModuleName: "agent.mjs",
      modules: [{ name: "agent.mjs", type: "esm", content: AGENT }],
      secrets: { CONTRACT_SECRET: SECRET },
    });
    const target = targetOf(bundle);

    it("deploys, then answers JSON with the platform's env and the agent's secrets", { timeout: 60_000 }, async () => {
      await runtime.deploy(bundle);
      const res = await withDeadline(
        runtime.invoke(target, requestOf("hello"), { limits: { cpuMs: 50, subRequests: 5 } }),
      );
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        output: { text: "hello" },
        env: { DEPLOYMENT_ID: bundle.deploymentId, RUNTIME_PROVIDER: subject.provider, CONTRACT_SECRET: SECRET },
      });
    });

    it("streams SSE incrementally", { timeout: 30_000 }, async () => {
      const res = await withDeadline(
        runtime.invoke(target, requestOf("stream", true), { limits: { cpuMs: 50, subRequests: 5 } }),
      );
      expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const events = await collectSse(res);
      const deltas = events.filter((e) => e.event === "delta");
      expect(deltas.map((e) => JSON.parse(e.data).text).join("")).toBe("a b c");
      expect(events.at(-1)?.event).toBe("done");
      expect(deltas.at(-1)!.receivedAt - deltas[0]!.receivedAt).toBeGreaterThanOrEqual(2 * DELTA_GAP_MS - 100);
    });

    it("reports an agent that throws as RuntimeError exception, the agent's fault, with its message", async () => {
      const err = await withDeadline(
        runtime.invoke(target, requestOf("throw"), { limits: { cpuMs: 50, subRequests: 5 } }),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RuntimeError);
      expect(err).toMatchObject({ code: "exception", fault: "agent", retryable: false });
      expect((err as Error).message).toContain("contract boom");
    });

    it("never holds a hanging agent past the caller's deadline", { timeout: 20_000 }, async () => {
      const started = Date.now();
      const err = await withDeadline(
        runtime.invoke(target, requestOf("hang"), { limits: { cpuMs: 50, subRequests: 5 } }),
      ).catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(DEADLINE_MS + 1_000);
      if (subject.ownTimeout) {
        expect(err).toMatchObject({ code: "timeout", fault: "agent" });
        expect(Date.now() - started).toBeLessThan(DEADLINE_MS);
      } else {
        expect((err as Error).message).toBe("caller deadline");
      }
    });

    it("removes the deployment (twice is fine)", { timeout: 30_000 }, async () => {
      await runtime.remove([bundle.scriptName]);
      await runtime.remove([bundle.scriptName]);
      if (subject.removeObservable) {
        const err = await withDeadline(
          runtime.invoke(target, requestOf("gone?"), { limits: { cpuMs: 50, subRequests: 5 } }),
        ).catch((e: unknown) => e);
        expect(err).toMatchObject({ code: "script_not_found" });
      }
    });
  });
}
