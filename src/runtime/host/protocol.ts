// What crosses the process boundary between the gateway and the agent host (src/agent-host/):
// the host's RPC entrypoint, the gateway's bridge entrypoint the host's doors forward to, and how
// a runtime failure travels. Workers RPC carries an Error's message but not its class or fields,
// so the host answers a failure as a value (HostFailure) and the gateway rebuilds the RuntimeError.
import {
  type DeploymentBundle,
  RuntimeError,
  type RuntimeErrorCode,
  type RuntimeFault,
  type RuntimeLimits,
} from "../types";
import type { TelemetryBindingProps } from "../user-script";

/** The host Worker's name (wrangler.host.toml) and the entrypoint the gateway's AGENT_HOST binding names. */
export const AGENT_HOST_SERVICE = "webhost-agent-host";
export const AGENT_HOST_ENTRYPOINT = "AgentHost";
/** The gateway's entrypoint the host's doors forward to (src/entrypoints/host-bridge.ts). */
export const HOST_BRIDGE_ENTRYPOINT = "HostBridge";

/** A RuntimeError as a value, so its code, fault and retryability survive RPC. */
export type HostFailure = {
  hostFailure: { code: RuntimeErrorCode; message: string; retryable: boolean; fault: RuntimeFault };
};

/** The identity half of an InvokeTarget (its loadBundle travels as its own RPC argument). */
export type HostInvokeTarget = { deploymentId: string; userId: string; agentId: string; scriptName: string };

/** The host's entrypoint, as the gateway calls it through AGENT_HOST. */
export interface AgentHostApi {
  /**
   * Answers at once, so only while the host's thread is free: the gateway pings around its calls to
   * tell, once the host is lost, which call held the thread (src/runtime/host/blame.ts).
   */
  ping(): Promise<"pong">;
  /** The deploy check of src/runtime/loader.ts, run in the host. */
  deploy(bundle: DeploymentBundle): Promise<HostFailure | { ok: true }>;
  /**
   * One invocation. `loadBundle` is the gateway's own callback, passed by RPC reference: the host calls it back
   * only on a cold start (the Worker Loader has no isolate for this deployment yet).
   */
  invoke(
    target: HostInvokeTarget,
    request: Request,
    limits: RuntimeLimits,
    loadBundle: () => Promise<DeploymentBundle>,
  ): Promise<Response | HostFailure>;
}

/**
 * The gateway's bridge, as the host's doors call it: each call names the identity the host gave
 * the door (props the agent cannot forge, since the agent only holds the host's door). The
 * gateway trusts this identity because only platform code holds a binding to the bridge.
 */
export interface HostBridgeApi {
  report(props: TelemetryBindingProps, input: unknown): Promise<unknown>;
  egress(props: TelemetryBindingProps, request: Request): Promise<Response>;
  // Not `tail`: that name is a handler of every entrypoint, and the dev registry's proxy drops it.
  storeLogs(props: TelemetryBindingProps, events: TraceItem[]): Promise<void>;
}

export function isHostFailure(value: unknown): value is HostFailure {
  return typeof value === "object" && value !== null && "hostFailure" in value;
}

/** What the host answers for a failure: a RuntimeError as it is, anything else as the agent's exception. */
export function toHostFailure(err: unknown): HostFailure {
  if (err instanceof RuntimeError) {
    return { hostFailure: { code: err.code, message: err.message, retryable: err.retryable, fault: err.fault } };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { hostFailure: { code: "exception", message: message.slice(0, 1000), retryable: false, fault: "agent" } };
}

/** The gateway's side of toHostFailure. */
export function fromHostFailure({ hostFailure: f }: HostFailure): RuntimeError {
  return new RuntimeError(f.code, f.message, f.retryable, { fault: f.fault });
}
