// The environment a user script sees, identical under both mechanisms: the loader passes it as
// `env` (plus TELEMETRY as a loopback binding), the namespace upload as plain_text/secret_text
// bindings (plus TELEMETRY as a service binding).
import type { DeploymentBundle } from "./types";

/** Names the platform injects itself; agent secrets may not use them. */
export const PLATFORM_BINDING_NAMES = [
  "TELEMETRY",
  "TELEMETRY_SECRET",
  "USER_ID",
  "AGENT_ID",
  "DEPLOYMENT_ID",
  "RUNTIME_PROVIDER",
] as const;

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
