// What a deployment's upload to the dispatch namespace contains: every module of the bundle as its
// own part (typed by content type), and metadata with the compatibility flags,
// carrying the user script's environment as bindings (from user-script.ts, the same environment
// the loader mechanism passes as `env`), the tags cleanup deletes by, and the gateway as its tail consumer.
import {
  MODULE_CONTENT_TYPES,
  type WorkerBinding,
  type WorkerModulePart,
  type WorkerUploadMetadata,
} from "../../cloudflare/types";
import type { DeploymentBundle, RuntimeModule } from "../types";
import {
  agentTag,
  deploymentTag,
  PLATFORM_MAIN_MODULE,
  plainUserEnv,
  platformMainModule,
  secretUserEnv,
  TELEMETRY_BINDING,
  TELEMETRY_ENTRYPOINT,
  telemetryBindingProps,
  userScriptCompatibilityFlags,
  userTag,
} from "../user-script";

/**
 * The user script's bindings: identity as plain_text, the telemetry key and the agent's secrets
 * as secret_text, TELEMETRY as a service binding to the gateway's TelemetrySink whose props are
 * the identity the gateway cross-checks (the loader hands the same props to the same class).
 */
export function namespaceBindings(bundle: DeploymentBundle, gatewayServiceName: string): WorkerBinding[] {
  const plain = plainUserEnv(bundle);
  const bindings: WorkerBinding[] = [
    {
      type: "service",
      name: TELEMETRY_BINDING,
      service: gatewayServiceName,
      entrypoint: TELEMETRY_ENTRYPOINT,
      props: telemetryBindingProps(bundle),
    },
  ];
  for (const [name, text] of Object.entries(plain)) bindings.push({ type: "plain_text", name, text });
  for (const [name, text] of Object.entries(secretUserEnv(bundle))) {
    // Platform names win: a secret can never shadow an identity value or TELEMETRY.
    if (name in plain || name === TELEMETRY_BINDING) continue;
    bindings.push({ type: "secret_text", name, text });
  }
  return bindings;
}

export function namespaceUpload(
  bundle: DeploymentBundle,
  gatewayServiceName: string,
): { metadata: WorkerUploadMetadata; modules: WorkerModulePart[] } {
  return {
    metadata: {
      // The platform's main module imports the user's (user-script.ts): the same in both mechanisms.
      main_module: PLATFORM_MAIN_MODULE,
      compatibility_date: bundle.compatibilityDate,
      compatibility_flags: userScriptCompatibilityFlags(bundle),
      bindings: namespaceBindings(bundle, gatewayServiceName),
      tags: [userTag(bundle.userId), agentTag(bundle.agentId), deploymentTag(bundle.deploymentId)],
      // The gateway is the script's Tail Worker: its tail() handler (src/index.ts) stores what the
      // script printed, naming the agent by the tags above.
      tail_consumers: [{ service: gatewayServiceName }],
    },
    modules: [
      {
        name: PLATFORM_MAIN_MODULE,
        content: platformMainModule(bundle.mainModuleName),
        contentType: MODULE_CONTENT_TYPES.esm,
      },
      ...bundle.modules.map(modulePart),
    ],
  };
}

/** One module as its own multipart part, typed by the content type Cloudflare reads its kind from. */
function modulePart(m: RuntimeModule): WorkerModulePart {
  return { name: m.name, content: m.content, contentType: MODULE_CONTENT_TYPES[m.type] };
}
