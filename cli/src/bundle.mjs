// Bundles an agent's TypeScript/JavaScript and its npm dependencies with esbuild into the modules
// the deploy API takes: one ES module (`index.js`, the main module) holding the code, plus one
// module per imported asset esbuild cannot inline — `.wasm` (wasm), `.txt`/`.html`/`.md`/`.sql`
// (text) and `.bin` (data) — kept as separate modules and imported by their relative path, which
// the Workers runtime resolves. JSON imports are inlined. With `nodejs_compat` the Node built-ins
// (`node:*` and their bare names) are left to the runtime.
import { readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { CliError } from "./output.mjs";

export const MAIN_MODULE_NAME = "index.js";

const ASSET_TYPES = [
  { filter: /\.wasm(\?module)?$/, type: "wasm" },
  { filter: /\.(txt|html|md|sql)$/, type: "text" },
  { filter: /\.bin$/, type: "data" },
];

/**
 * @typedef {{ name: string, type: "esm" | "cjs" | "text" | "data" | "json" | "wasm", content: string, encoding?: "utf8" | "base64" }} Module
 * @typedef {{ mainModuleName: string, modules: Module[], bytes: number, warnings: string[] }} Bundle
 */

/** @param {import("esbuild").Message} m */
function formatMessage(m) {
  const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : "";
  return `${where}${m.text}`;
}

/**
 * @param {{ dir: string, main: string, compatibilityFlags?: string[], minify?: boolean }} opts
 * @returns {Promise<Bundle>}
 */
export async function bundleAgent({ dir, main, compatibilityFlags = [], minify = false }) {
  const root = resolve(dir);
  const entry = resolve(root, main);
  try {
    statSync(entry);
  } catch {
    throw new CliError(`main module ${main} not found in ${root} (agent.config.json "main")`);
  }
  const nodeCompat = compatibilityFlags.some((f) => f === "nodejs_compat" || f === "nodejs_compat_v2");
  /** @type {Map<string, Module>} */
  const assets = new Map();

  /** @type {import("esbuild").Plugin} */
  const assetModules = {
    name: "webhost-asset-modules",
    setup(build) {
      for (const { filter, type } of ASSET_TYPES) {
        build.onResolve({ filter }, (args) => {
          const file = resolve(args.resolveDir, args.path.replace(/\?module$/, ""));
          const name = relative(root, file).split(sep).join("/");
          if (name.startsWith("..") || isAbsolute(name)) {
            throw new Error(`${args.path}: an asset module must live inside the agent's directory`);
          }
          if (!assets.has(name)) {
            const bytes = readFileSync(file);
            assets.set(
              name,
              type === "text"
                ? { name, type, content: bytes.toString("utf8") }
                : { name, type, content: bytes.toString("base64"), encoding: "base64" },
            );
          }
          // The main module sits at the root, so `./<name>` is the asset module's name.
          return { path: `./${name}`, external: true };
        });
      }
    },
  };

  // Loaded here, not at startup: only deploy needs it.
  const esbuild = await import("esbuild");
  let result;
  try {
    result = await esbuild.build({
      absWorkingDir: root,
      entryPoints: [entry],
      outfile: join(root, ".webhost", MAIN_MODULE_NAME),
      bundle: true,
      write: false,
      format: "esm",
      platform: "browser",
      conditions: ["workerd", "worker", "browser"],
      target: "es2022",
      minify,
      keepNames: true,
      legalComments: "none",
      logLevel: "silent",
      define: { "process.env.NODE_ENV": '"production"' },
      external: ["cloudflare:*", ...(nodeCompat ? ["node:*", ...builtinModules] : [])],
      plugins: [assetModules],
    });
  } catch (err) {
    const errors = err?.errors?.map(formatMessage) ?? [String(err?.message ?? err)];
    const hint =
      errors.some((e) => /"node:|Node\.js|built-in/.test(e)) && !nodeCompat
        ? ' (a Node built-in is imported: add "nodejs_compat" to compatibilityFlags in agent.config.json)'
        : "";
    throw new CliError(`bundling failed${hint}:\n  ${errors.join("\n  ")}`, { errors });
  }
  const out = result.outputFiles.find((f) => f.path.endsWith(".js"));
  if (!out) throw new CliError("bundling produced no JavaScript");
  /** @type {Module[]} */
  const modules = [{ name: MAIN_MODULE_NAME, type: "esm", content: out.text }, ...assets.values()];
  const bytes = modules.reduce(
    (n, m) => n + (m.encoding === "base64" ? Buffer.from(m.content, "base64").length : Buffer.byteLength(m.content)),
    0,
  );
  return { mainModuleName: MAIN_MODULE_NAME, modules, bytes, warnings: result.warnings.map(formatMessage) };
}
