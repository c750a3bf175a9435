// The AgentCore runtime provider: each deployment is one Amazon Bedrock AgentCore runtime, made
// from the deployment's bundle zipped with a Node wrapper (package.ts) and uploaded to S3, created
// with clientToken derived from the deployment id (a retried deploy job gets the same runtime) and
// polled until READY. Invocations go through InvokeAgentRuntime; AWS's failures are classified
// here into RuntimeErrors so the deploy job and invoke treat them like the Workers runtimes'.
import { describeError, logInfo } from "../../lib/logger";
import { readBoundedText } from "../../lib/read-bounded";
import { type DeploymentBundle, type InvokeTarget, RuntimeError, type RuntimeProvider } from "../types";
import { plainUserEnv, secretUserEnv } from "../user-script";
import { AgentCoreAws, AwsApiError, type FetchLike, type RuntimeSummary } from "./aws-client";
import { type AgentCoreConfigVars, parseAgentCoreConfig } from "./config";
import { AGENT_ERROR_FIELD, PATH_HEADER, packageBundle, REQUEST_ID_HEADER, WRAPPER_MODULE } from "./package";

export type AgentCoreRuntimeOptions = {
  env: AgentCoreConfigVars;
  invokeTimeoutMs: number;
  fetch?: FetchLike;
  /** How long deploy waits for READY (default 5 minutes), and the first poll delay (default 1 s). */
  readyTimeoutMs?: number;
  firstPollMs?: number;
};

/** AgentCore runtime names: [a-zA-Z][a-zA-Z0-9_]{0,47}. A script name maps to one. */
export function runtimeNameFor(scriptName: string): string {
  return scriptName.replaceAll("-", "_").slice(0, 48);
}
/** clientToken must be 33–256 characters of [a-zA-Z0-9-]; a `dep_…` id alone is neither. */
export function clientTokenFor(deploymentId: string): string {
  return `webhost-deploy-${deploymentId.replaceAll("_", "-")}`.padEnd(33, "0");
}
export function artifactKeyFor(scriptName: string): string {
  return `webhost/agentcore/${scriptName}.zip`;
}
const descriptionFor = (b: { agentId: string; deploymentId: string }) =>
  `webhost agent ${b.agentId} deployment ${b.deploymentId}`;

/**
 * The runtime session for an invocation: derived from the invoke/v1 sessionId (scoped to the
 * agent, so two agents' equal ids never share a microVM) or fresh; always 33+ characters.
 */
export async function sessionIdFor(agentId: string, sessionId: string | undefined): Promise<string> {
  if (sessionId === undefined) return `webhost-${crypto.randomUUID()}`;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${agentId}\n${sessionId}`));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `webhost-${hex.slice(0, 40)}`;
}

function sessionOf(payload: Uint8Array): string | undefined {
  try {
    const body = JSON.parse(new TextDecoder().decode(payload)) as { sessionId?: unknown };
    return typeof body.sessionId === "string" ? body.sessionId : undefined;
  } catch {
    return undefined;
  }
}

/** AWS's failure as the runtime interface's error. */
function runtimeErrorFromAws(err: unknown, what: string): RuntimeError {
  if (err instanceof RuntimeError) return err;
  if (!(err instanceof AwsApiError)) {
    return new RuntimeError("unavailable", `${what}: ${describeError(err)}`, true, { cause: err });
  }
  if (err.auth) {
    return new RuntimeError("unavailable", `${what}: AWS refused the gateway's credentials: ${err.message}`, false, {
      fault: "configuration",
      cause: err,
    });
  }
  if (err.type === "ThrottlingException" || err.type === "ServiceQuotaExceededException") {
    return new RuntimeError("throttled", `${what}: ${err.message}`, true, { cause: err });
  }
  if (err.type === "ResourceNotFoundException") {
    return new RuntimeError("script_not_found", `${what}: ${err.message}`, false, { cause: err });
  }
  if (err.type === "RuntimeClientError") {
    // The agent's own container failed (it did not start, or crashed while answering).
    return new RuntimeError("exception", `the agent's runtime failed: ${err.message}`, false, { cause: err });
  }
  if (err.type === "ValidationException") {
    // AWS's text is left out even of the operator's log: a validation message may quote the value
    // it refused, and CreateAgentRuntime's values include the agent's secrets (environmentVariables).
    return new RuntimeError(
      "unavailable",
      `${what}: AWS refused the request as invalid (ValidationException; its message is not logged because it may quote the request's values)`,
      false,
      { fault: "platform" },
    );
  }
  return new RuntimeError("unavailable", `${what}: ${err.message}`, err.retryable, { cause: err });
}

export interface AgentCoreRuntime extends RuntimeProvider {
  readonly mechanism: "agentcore";
  removeAgentScripts(agentId: string): Promise<number>;
}

/** How much of an agent's 500 answer is read to look for the wrapper's "the agent threw" marker. */
const AGENT_ERROR_MAX_BYTES = 16 * 1024;

/** Runtime ARNs by script name, per isolate: invoke lists runtimes only on a cold isolate. */
const arnCache = new Map<string, string>();

export function createAgentCoreRuntime(opts: AgentCoreRuntimeOptions): AgentCoreRuntime {
  const config = parseAgentCoreConfig(opts.env);
  const aws = new AgentCoreAws(config, opts.fetch);
  const readyTimeoutMs = opts.readyTimeoutMs ?? 5 * 60_000;
  const firstPollMs = opts.firstPollMs ?? 1_000;

  async function findRuntime(scriptName: string): Promise<RuntimeSummary | undefined> {
    const name = runtimeNameFor(scriptName);
    return (await aws.listRuntimes()).find((r) => r.agentRuntimeName === name);
  }

  async function waitUntilReady(agentRuntimeId: string): Promise<string> {
    const started = Date.now();
    let delay = firstPollMs;
    for (;;) {
      const rt = await aws.getRuntime(agentRuntimeId);
      if (rt.status === "READY") return rt.agentRuntimeArn;
      if (rt.status === "CREATE_FAILED" || rt.status === "UPDATE_FAILED") {
        // AWS's reason is about what we gave it (the code, its entry point): shown to the owner.
        throw new RuntimeError(
          "load_failed",
          `AgentCore could not start the runtime: ${rt.failureReason ?? rt.status}`,
          false,
          {
            fault: "agent",
          },
        );
      }
      if (rt.status === "DELETING")
        throw new RuntimeError("unavailable", "the AgentCore runtime is being deleted", false);
      if (Date.now() - started + delay > readyTimeoutMs) {
        throw new RuntimeError(
          "unavailable",
          `the AgentCore runtime was not READY within ${readyTimeoutMs} ms (${rt.status})`,
          true,
        );
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }

  async function removeRuntimes(found: RuntimeSummary[], scriptNames: string[]): Promise<void> {
    for (const rt of found) await aws.deleteRuntime(rt.agentRuntimeId);
    for (const name of scriptNames) {
      arnCache.delete(name);
      await aws.deleteObject(artifactKeyFor(name));
    }
  }

  return {
    mechanism: "agentcore",

    async deploy(bundle: DeploymentBundle): Promise<void> {
      const key = artifactKeyFor(bundle.scriptName);
      const zip = packageBundle(bundle);
      const values: Record<string, string> = {
        ...secretUserEnv(bundle),
        ...plainUserEnv(bundle),
        TELEMETRY_REPORT_URL: config.telemetryReportUrl,
      };
      const env = { ...values, WEBHOST_ENV_NAMES: JSON.stringify(Object.keys(values)) };
      try {
        await aws.putObject(key, zip);
        let id: string;
        try {
          const created = await aws.createRuntime({
            agentRuntimeName: runtimeNameFor(bundle.scriptName),
            description: descriptionFor(bundle),
            clientToken: clientTokenFor(bundle.deploymentId),
            s3Key: key,
            entryPoint: [WRAPPER_MODULE],
            environmentVariables: env,
            requestHeaderAllowlist: [PATH_HEADER, REQUEST_ID_HEADER],
          });
          id = created.agentRuntimeId;
        } catch (err) {
          // The name is this deployment's: an earlier delivery created it (e.g. its answer was lost).
          if (!(err instanceof AwsApiError && err.type === "ConflictException")) throw err;
          const existing = await findRuntime(bundle.scriptName);
          if (!existing) throw err;
          id = existing.agentRuntimeId;
        }
        arnCache.set(bundle.scriptName, await waitUntilReady(id));
      } catch (err) {
        throw runtimeErrorFromAws(err, `deploy ${bundle.scriptName} to AgentCore`);
      }
    },

    async invoke(target: InvokeTarget, request: Request): Promise<Response> {
      const controller = new AbortController();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(new RuntimeError("timeout", `the agent did not answer within ${opts.invokeTimeoutMs} ms`, false));
        }, opts.invokeTimeoutMs);
      });
      const work = async (): Promise<Response> => {
        let arn = arnCache.get(target.scriptName);
        if (!arn) {
          arn = (await findRuntime(target.scriptName))?.agentRuntimeArn;
          if (!arn) throw new RuntimeError("script_not_found", `no AgentCore runtime for ${target.scriptName}`, false);
          arnCache.set(target.scriptName, arn);
        }
        const payload = new Uint8Array(await request.arrayBuffer());
        const url = new URL(request.url);
        const requestId = request.headers.get("x-request-id");
        const res = await aws.invoke(
          arn,
          payload,
          {
            contentType: request.headers.get("content-type") ?? "application/json",
            accept: request.headers.get("accept") ?? "application/json",
            sessionId: await sessionIdFor(target.agentId, sessionOf(payload)),
            custom: {
              [PATH_HEADER]: url.pathname + url.search,
              ...(requestId ? { [REQUEST_ID_HEADER]: requestId } : {}),
            },
          },
          AbortSignal.any([request.signal, controller.signal]),
        );
        if (res.status === 500 && (res.headers.get("content-type") ?? "").includes("json")) {
          // The wrapper's marker is small; an agent's own 500 is passed on, cut to what the gateway shows.
          const text = (await readBoundedText(res.body, AGENT_ERROR_MAX_BYTES, { overflow: "truncate" })) ?? "";
          let thrown: { message?: string } | undefined;
          try {
            thrown = (JSON.parse(text) as Record<string, { message?: string }>)[AGENT_ERROR_FIELD];
          } catch {
            thrown = undefined;
          }
          if (thrown) throw new RuntimeError("exception", thrown.message ?? "the agent threw", false);
          return new Response(text, { status: 500, headers: res.headers });
        }
        return res;
      };
      try {
        return await Promise.race([work(), timedOut]);
      } catch (err) {
        if (err instanceof Error && err.name === "AbortError" && controller.signal.aborted) {
          throw new RuntimeError("timeout", `the agent did not answer within ${opts.invokeTimeoutMs} ms`, false);
        }
        throw runtimeErrorFromAws(err, `invoke ${target.scriptName} on AgentCore`);
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    },

    async remove(scriptNames: string[]): Promise<void> {
      if (scriptNames.length === 0) return;
      try {
        const names = new Set(scriptNames.map(runtimeNameFor));
        const found = (await aws.listRuntimes()).filter((r) => names.has(r.agentRuntimeName));
        await removeRuntimes(found, scriptNames);
      } catch (err) {
        throw runtimeErrorFromAws(err, "remove AgentCore runtimes");
      }
    },

    // By the description every runtime is created with, so one whose deploy D1 never finished goes too.
    async removeAgentScripts(agentId: string): Promise<number> {
      try {
        const marker = `webhost agent ${agentId} `;
        const found = (await aws.listRuntimes()).filter((r) => (r.description ?? "").startsWith(marker));
        const scriptNames = found.map((r) => r.agentRuntimeName.replaceAll("_", "-"));
        await removeRuntimes(found, scriptNames);
        if (found.length) logInfo("agentcore_runtimes_removed", { agentId, count: found.length });
        return found.length;
      } catch (err) {
        throw runtimeErrorFromAws(err, "remove the agent's AgentCore runtimes");
      }
    },
  };
}
