// `webhost deploy`: bundle → find or create the agent → upload (one Idempotency-Key for every
// retry) → wait until the deployment is active or failed.
import { resolve } from "node:path";
import { readAgentConfig } from "./agent-config.mjs";
import { findAgent, newIdempotencyKey } from "./api.mjs";
import { bundleAgent } from "./bundle.mjs";
import { ApiError, CliError } from "./output.mjs";

const POLL_INTERVAL_MS = 150;

/**
 * The deploy request body for a bundle.
 * `legacy` is for a gateway that takes only `moduleCode` (one ES module): possible only when the
 * bundle is that one module and the config asks for nothing such a gateway cannot do.
 * @param {import("./agent-config.mjs").AgentConfig} config
 * @param {import("./bundle.mjs").Bundle} bundle
 * @param {{ legacy?: boolean }} [opts]
 */
export function deployPayload(config, bundle, { legacy = false } = {}) {
  const common = {
    ...(config.compatibilityDate ? { compatibilityDate: config.compatibilityDate } : {}),
    ...(config.invokePath ? { invokePath: config.invokePath } : {}),
  };
  if (legacy) {
    return { moduleCode: bundle.modules[0].content, mainModuleName: bundle.mainModuleName, ...common };
  }
  return {
    modules: bundle.modules,
    mainModuleName: bundle.mainModuleName,
    ...common,
    ...(config.compatibilityFlags?.length ? { compatibilityFlags: config.compatibilityFlags } : {}),
    ...(config.smokeTest ? { smokeTest: config.smokeTest } : {}),
  };
}

/** Whether a gateway could take this deploy as one `moduleCode`. */
export function legacyCompatible(config, bundle) {
  return bundle.modules.length === 1 && !config.compatibilityFlags?.length && !config.smokeTest;
}

/** A 400 that says the gateway does not know the `modules` field (it predates bundles). */
export function isModulesUnsupported(err) {
  if (!(err instanceof ApiError) || err.problem.status !== 400 || err.problem.code !== "validation_failed") {
    return false;
  }
  const errors = Array.isArray(err.problem.errors) ? err.problem.errors : [];
  return errors.some(
    (e) => /modules/.test(`${e.location ?? ""} ${e.message ?? ""}`) && /nrecognized|unknown/i.test(e.message ?? ""),
  );
}

const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`;

/**
 * @param {ReturnType<import("./api.mjs").createClient>} client
 * @param {string} agentId
 * @param {string} deploymentId
 * @param {{ timeoutMs: number, progress: (s: string) => void }} opts
 */
export async function waitForDeployment(client, agentId, deploymentId, { timeoutMs, progress }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { deployment } = await client.get(`/v1/agents/${agentId}/deployments/${deploymentId}`);
    if (deployment.status !== "deploying") return deployment;
    if (Date.now() > deadline) {
      progress(`still deploying after ${timeoutMs / 1000} s; check with \`webhost deployments ${agentId}\``);
      throw new CliError(`deployment ${deploymentId} still deploying after ${timeoutMs / 1000} s`, { deployment });
    }
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
}

/**
 * @param {ReturnType<import("./api.mjs").createClient>} client
 * @param {{ dir: string, wait: boolean, timeoutMs: number, minify?: boolean }} opts
 * @param {import("./output.mjs").Output} out
 */
export async function deploy(client, { dir, wait, timeoutMs, minify }, out) {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  const root = resolve(dir);
  const config = readAgentConfig(root);
  client.requireCredential();

  out.progress(`bundling ${config.main}…`);
  const bundle = await bundleAgent({
    dir: root,
    main: config.main,
    compatibilityFlags: config.compatibilityFlags,
    minify,
  });
  for (const w of bundle.warnings) out.progress(`warning: ${w}`);
  const bundledMs = ms();

  let agent = await findAgent(client, config.name);
  let created = false;
  if (!agent) {
    out.progress(`creating agent ${config.name}…`);
    agent = (await client.post("/v1/agents", { name: config.name })).agent;
    created = true;
  }

  let payload = deployPayload(config, bundle);
  const size = Buffer.byteLength(JSON.stringify(payload));
  out.progress(
    `uploading ${bundle.modules.length} module${bundle.modules.length === 1 ? "" : "s"} (${kb(bundle.bytes)}, request ${kb(size)}) to ${agent.name}…`,
  );
  let format = "modules";
  let answer;
  try {
    answer = await client.post(`/v1/agents/${agent.id}/deploy`, payload, { idempotencyKey: newIdempotencyKey() });
  } catch (err) {
    if (!isModulesUnsupported(err)) throw err;
    if (!legacyCompatible(config, bundle)) {
      throw new CliError(
        "this gateway takes only a single ES module (moduleCode): it cannot deploy asset modules, compatibilityFlags or a smokeTest",
      );
    }
    out.progress("this gateway predates bundles; uploading the bundle as one moduleCode");
    format = "moduleCode";
    payload = deployPayload(config, bundle, { legacy: true });
    answer = await client.post(`/v1/agents/${agent.id}/deploy`, payload, { idempotencyKey: newIdempotencyKey() });
  }
  let deployment = answer.deployment;
  const uploadedMs = ms();

  const summary = () => ({
    agent: { id: agent.id, name: agent.name, created },
    deployment,
    bundle: {
      format,
      mainModuleName: bundle.mainModuleName,
      bytes: bundle.bytes,
      modules: bundle.modules.map((m) => ({ name: m.name, type: m.type })),
    },
    timings: { bundleMs: bundledMs, uploadMs: uploadedMs - bundledMs, totalMs: ms() },
  });

  if (!wait) {
    out.progress(`deploying ${deployment.id} (not waiting: --no-wait)`);
    out.result(summary(), `${deployment.id} ${deployment.status}`);
    return 0;
  }
  out.progress(`deploying ${deployment.id}…`);
  deployment = await waitForDeployment(client, agent.id, deployment.id, { timeoutMs, progress: out.progress });
  if (deployment.status === "failed") {
    out.progress(`error: deployment ${deployment.id} failed: ${deployment.errorMessage ?? "(no message)"}`);
    out.result(summary(), "");
    return 1;
  }
  out.progress(`${deployment.status} in ${(ms() / 1000).toFixed(1)} s`);
  out.result(summary(), `${deployment.id} ${deployment.status} (agent ${agent.name}, ${agent.id})`);
  return deployment.status === "active" ? 0 : 1;
}
