// agent.config.json: what `webhost deploy` deploys and how.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CliError } from "./output.mjs";

export const CONFIG_FILE = "agent.config.json";
const KEYS = ["$schema", "name", "main", "compatibilityDate", "compatibilityFlags", "invokePath", "smokeTest"];

/**
 * @typedef {{ name: string, main: string, compatibilityDate?: string, compatibilityFlags?: string[], invokePath?: string, smokeTest?: Record<string, unknown> }} AgentConfig
 * @param {string} dir
 * @returns {AgentConfig}
 */
export function readAgentConfig(dir) {
  const file = join(dir, CONFIG_FILE);
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new CliError(`no ${CONFIG_FILE} in ${dir} (run \`webhost init\` to scaffold an agent)`);
  }
  let config;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${file} is not valid JSON: ${err.message}`);
  }
  return validateAgentConfig(config, file);
}

/**
 * @param {unknown} config
 * @param {string} file for messages
 * @returns {AgentConfig}
 */
export function validateAgentConfig(config, file = CONFIG_FILE) {
  const problems = [];
  if (!config || typeof config !== "object" || Array.isArray(config)) {
    throw new CliError(`${file} must hold a JSON object`);
  }
  const c = /** @type {Record<string, any>} */ (config);
  for (const key of Object.keys(c)) {
    if (!KEYS.includes(key)) problems.push(`unknown field "${key}" (allowed: ${KEYS.slice(1).join(", ")})`);
  }
  if (typeof c.name !== "string" || !c.name.trim()) problems.push(`"name" must be the agent's name`);
  if (c.main !== undefined && (typeof c.main !== "string" || !c.main)) problems.push(`"main" must be a file path`);
  if (c.compatibilityDate !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(String(c.compatibilityDate))) {
    problems.push(`"compatibilityDate" must be YYYY-MM-DD`);
  }
  if (
    c.compatibilityFlags !== undefined &&
    (!Array.isArray(c.compatibilityFlags) || c.compatibilityFlags.some((f) => typeof f !== "string"))
  ) {
    problems.push(`"compatibilityFlags" must be an array of strings`);
  }
  if (c.invokePath !== undefined && (typeof c.invokePath !== "string" || !c.invokePath.startsWith("/"))) {
    problems.push(`"invokePath" must start with "/"`);
  }
  if (c.smokeTest !== undefined && (typeof c.smokeTest !== "object" || c.smokeTest === null || !c.smokeTest.request)) {
    problems.push(`"smokeTest" must be { "request": <invoke/v1 body>, "expectStatus"?, "timeoutMs"? }`);
  }
  if (problems.length) throw new CliError(`${file}: ${problems.join("; ")}`, { problems });
  return { main: "src/index.ts", ...c, name: c.name.trim() };
}
