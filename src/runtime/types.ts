// The runtime provider interface (docs/architecture.md, "Layers"): everything that touches user code goes through it, and nothing
// outside src/runtime/ knows which mechanism is behind it. Two mechanisms implement it for the
// "cloudflare" provider: the Worker Loader (`loader`, local and tests) and the Workers for
// Platforms dispatch namespace (`namespace`, production); the "agentcore" provider runs a
// deployment as an Amazon Bedrock AgentCore runtime (agentcore/). What a user script gets from the
// platform under each is in user-script.ts; docs/runtimes.md compares them.

export const RUNTIME_PROVIDERS = ["cloudflare", "agentcore"] as const;
export type RuntimeProviderName = (typeof RUNTIME_PROVIDERS)[number];

/** Per-invocation resource limits for the user script (from the caller's tier). */
export type RuntimeLimits = { cpuMs: number; subRequests: number };

/** The module types a bundle may hold (the Workers runtime's own). */
export const MODULE_TYPES = ["esm", "cjs", "text", "data", "json", "wasm"] as const;
export type ModuleType = (typeof MODULE_TYPES)[number];

/** One module: text for esm/cjs/text/json, bytes for data/wasm. */
export type RuntimeModule =
  | { name: string; type: "esm" | "cjs" | "text" | "json"; content: string }
  | { name: string; type: "data" | "wasm"; content: Uint8Array };

/**
 * Everything a mechanism needs to run one deployment's code. Holds decrypted secret material:
 * it lives only in memory for the duration of a deploy or a (cold) invoke, and is never logged.
 */
export type DeploymentBundle = {
  deploymentId: string;
  userId: string;
  agentId: string;
  /** The runtime's name for this deployment's code; derived from the deployment id. */
  scriptName: string;
  runtimeProvider: RuntimeProviderName;
  mainModuleName: string;
  /** Every module of the bundle; `mainModuleName` names an `esm` one. */
  modules: RuntimeModule[];
  compatibilityDate: string;
  /** The deployment's compatibility flags (from the documented allow-list). */
  compatibilityFlags: string[];
  /** base64url of the deployment's 32-byte telemetry HMAC key. */
  telemetrySecret: string;
  /** The agent's secrets as they were when this deployment was created. */
  secrets: Record<string, string>;
};

/** What invoke needs: identity up front, the bundle only if the mechanism must (re)load code. */
export type InvokeTarget = {
  deploymentId: string;
  /** Which provider runs the deployment (default "cloudflare"). */
  runtimeProvider?: RuntimeProviderName;
  userId: string;
  agentId: string;
  scriptName: string;
  loadBundle: () => Promise<DeploymentBundle>;
};

export type RuntimeErrorCode =
  | "script_not_found"
  | "limit_exceeded"
  | "exception"
  | "timeout"
  | "invalid_response"
  | "load_failed"
  | "unavailable"
  /** The runtime refuses more work for now (AgentCore throttling); Retry-After applies. */
  | "throttled";

/**
 * Whose failure it is, which decides what the tenant is told:
 * - `agent`: the agent's own code (it fails to load, has no fetch handler, throws, exceeds a
 *   limit, answers garbage). The message is about the agent's code and is shown to its owner.
 * - `platform`: the gateway, D1, the runtime or the Cloudflare API failed. The tenant gets a
 *   generic message with a reference; the message goes to an operator log line only.
 * - `configuration`: the gateway is misconfigured (the Cloudflare API refuses its token, a binding
 *   is missing). Like `platform`, and retrying cannot help until an operator fixes it.
 */
export type RuntimeFault = "agent" | "platform" | "configuration";

/** The fault a code implies unless the thrower says otherwise. */
const DEFAULT_FAULT: Record<RuntimeErrorCode, RuntimeFault> = {
  script_not_found: "platform",
  limit_exceeded: "agent",
  exception: "agent",
  timeout: "agent",
  invalid_response: "agent",
  load_failed: "agent",
  unavailable: "platform",
  throttled: "platform",
};

/** A failure of the runtime, classified; `retryable` says whether trying again can help. */
export class RuntimeError extends Error {
  override name = "RuntimeError";
  readonly fault: RuntimeFault;
  constructor(
    readonly code: RuntimeErrorCode,
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown; fault?: RuntimeFault },
  ) {
    super(message, options);
    this.fault = options?.fault ?? DEFAULT_FAULT[code];
  }
}

export interface RuntimeProvider {
  /** Makes the deployment's code runnable. Resolves only when it is ready to be invoked. */
  deploy(bundle: DeploymentBundle): Promise<void>;
  /** Sends one request to the deployment's code; never retried by the gateway. */
  invoke(target: InvokeTarget, request: Request, opts: { limits: RuntimeLimits }): Promise<Response>;
  /** Removes the runtime copies of these scripts (absent ones are not an error). */
  remove(scriptNames: string[]): Promise<void>;
  /**
   * Removes every stored script of a deleted agent, found by the mechanism itself (so also one
   * whose upload was never recorded); resolves with how many it removed. Only mechanisms that can
   * find an agent's scripts have it; for the others, remove the agent's scripts by name.
   */
  removeAgentScripts?(agentId: string): Promise<number>;
}
