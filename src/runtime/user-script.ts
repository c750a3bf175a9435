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
  // Set by the agentcore provider (src/runtime/agentcore/): the telemetry route and the wrapper's env list.
  "TELEMETRY_REPORT_URL",
  "WEBHOST_ENV_NAMES",
] as const;

/**
 * The compatibility flags a deployment may ask for (`compatibilityFlags` of the deploy body).
 * Anything else is refused: a flag can change what a script may do, so each is allowed on purpose.
 */
export const ALLOWED_COMPATIBILITY_FLAGS = ["nodejs_compat", "nodejs_compat_v2", "no_nodejs_compat_v2"] as const;

/** The flags a deployment runs with: exactly the ones it asked for (no platform additions). */
export function userScriptCompatibilityFlags(bundle: DeploymentBundle): string[] {
  return [...bundle.compatibilityFlags];
}

/**
 * The platform's main module, added to every bundle under both mechanisms (module names starting
 * with "__webhost" are reserved). It imports the user's main module, fails the top-level
 * evaluation when the default export has no fetch handler (so the loader's load and Cloudflare's
 * upload validation refuse such a bundle alike), re-exports the user's default export unchanged,
 * and offers the loader's deploy check an RPC entrypoint. It never sees a request.
 */
export const PLATFORM_MAIN_MODULE = "__webhost_main.mjs";
export const DEPLOY_CHECK_ENTRYPOINT = "WebhostDeployCheck";
export const NO_FETCH_HANDLER_MESSAGE =
  "the default export has no fetch handler: export default { async fetch(request, env, ctx) { … } }";

export function platformMainModule(mainModuleName: string): string {
  const main = JSON.stringify(`./${mainModuleName}`);
  return `import { WorkerEntrypoint } from "cloudflare:workers";
import handler from ${main};
const fetchOf = typeof handler === "function" ? handler.prototype?.fetch : handler?.fetch;
if (typeof fetchOf !== "function") throw new Error(${JSON.stringify(NO_FETCH_HANDLER_MESSAGE)});
export default handler;
export class ${DEPLOY_CHECK_ENTRYPOINT} extends WorkerEntrypoint {
  check() {
    return { hasFetch: true };
  }
}
`;
}

/**
 * What a bundle that failed to load tells the user to change, the same under both mechanisms (the
 * loader's startup error, or Cloudflare's upload validation of the top level).
 */
export function loadFailureMessage(message: string): string {
  if (message.includes(NO_FETCH_HANDLER_MESSAGE)) return NO_FETCH_HANDLER_MESSAGE;
  if (/Top-level await in module is unsettled/i.test(message)) {
    return "the bundle's top-level code never finished (a top-level await that never settles): move waiting work into the fetch handler";
  }
  const missing = /No such module "([^"]+)"\.? imported from "([^"]+)"/.exec(message);
  if (missing) {
    const [, resolved, importer] = missing as unknown as [string, string, string];
    const dir = importer.includes("/") ? importer.slice(0, importer.lastIndexOf("/") + 1) : "";
    const wanted = dir && resolved.startsWith(dir) ? resolved.slice(dir.length) : resolved;
    return `module \`${importer}\` imports \`${wanted}\` (resolved as \`${resolved}\`), which is not in the bundle: bundle your dependencies (e.g. with esbuild or wrangler) or fix the import path`;
  }
  return `the bundle failed to load: ${message}`;
}

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

/**
 * The identity a stored script's tags name (userTag, agentTag, deploymentTag), as a namespace
 * tail event carries them in `scriptTags`; undefined when any of the three is missing.
 */
export function identityFromTags(tags: readonly string[]): TelemetryBindingProps | undefined {
  const pick = (prefix: string) => tags.find((t) => t.startsWith(prefix))?.slice(prefix.length);
  const userId = pick("user-");
  const agentId = pick("agent-");
  const deploymentId = pick("deployment-");
  return userId && agentId && deploymentId ? { userId, agentId, deploymentId } : undefined;
}
