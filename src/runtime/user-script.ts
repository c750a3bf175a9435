// What every user script gets from the platform, whichever mechanism runs it: its name, its
// compatibility flags, the environment it sees (identity as plain values, the telemetry key and
// the agent's secrets as secrets, TELEMETRY bound to the gateway's TelemetrySink with the
// script's identity as props), and the tags it is filed under. The loader passes the environment
// as `env`; the namespace upload as plain_text / secret_text / service bindings.
import type { DeploymentBundle } from "./types";

/** The binding user scripts report telemetry through. */
export const TELEMETRY_BINDING = "TELEMETRY";
/** The gateway's RPC entrypoint behind TELEMETRY (src/entrypoints/telemetry-sink.ts). */
export const TELEMETRY_ENTRYPOINT = "TelemetrySink";

/**
 * The dispatch namespace's outbound parameter (namespace mode) that tells the egress door
 * (src/entrypoints/egress.ts) which agent, deployment and invocation a request comes from. It must
 * be listed in the gateway's `dispatch_namespaces` binding: `outbound = { service, parameters }`.
 */
export const EGRESS_OUTBOUND_PARAMETER = "webhost_egress";

/** Names the platform injects itself; agent secrets may not use them. */
export const PLATFORM_BINDING_NAMES = [
  TELEMETRY_BINDING,
  "TELEMETRY_SECRET",
  "USER_ID",
  "AGENT_ID",
  "DEPLOYMENT_ID",
  "RUNTIME_PROVIDER",
] as const;

/**
 * Compatibility flags every user script runs with. Empty: user scripts get exactly their
 * deployment's compatibility date.
 */
export const USER_SCRIPT_COMPATIBILITY_FLAGS: readonly string[] = [];

/** The props TELEMETRY carries: the identity the gateway cross-checks, set by the gateway. */
export type TelemetryBindingProps = { userId: string; agentId: string; deploymentId: string };

export function telemetryBindingProps(bundle: DeploymentBundle): TelemetryBindingProps {
  return { userId: bundle.userId, agentId: bundle.agentId, deploymentId: bundle.deploymentId };
}

/** Identity values, visible as plain text. */
export function plainUserEnv(bundle: DeploymentBundle): Record<string, string> {
  return {
    USER_ID: bundle.userId,
    AGENT_ID: bundle.agentId,
    DEPLOYMENT_ID: bundle.deploymentId,
    RUNTIME_PROVIDER: bundle.runtimeProvider,
  };
}

/** Secret values: the telemetry key and the agent's secrets (platform names always win). */
export function secretUserEnv(bundle: DeploymentBundle): Record<string, string> {
  return { ...bundle.secrets, TELEMETRY_SECRET: bundle.telemetrySecret };
}

/** Script name for a deployment: immutable, so a rollback never re-uploads. */
export function scriptNameFor(deploymentId: string): string {
  return `webhost-${deploymentId.replaceAll("_", "-")}`;
}

/** Tags a stored script is filed under (at most 8 are allowed; no "," or "&"). */
export function userTag(userId: string): string {
  return `user-${userId}`;
}
export function agentTag(agentId: string): string {
  return `agent-${agentId}`;
}
export function deploymentTag(deploymentId: string): string {
  return `deployment-${deploymentId}`;
}
