// The deploy payload's code, checked and put in one canonical form: a bundle of named modules, the
// main module and the compatibility flags. The canonical JSON is what is stored (the ARTIFACTS
// object) and what its sha256 is taken over, so the same bundle always has the same address.
// Every refusal names the module and the rule it broke (400), or the limit it passed (413).
import { fromBase64, sha256Hex, utf8 } from "../../crypto/encoding";
import { ApiError, type FieldError } from "../../lib/errors";
import type { ModuleType, RuntimeModule } from "../../runtime/types";
import { ALLOWED_COMPATIBILITY_FLAGS } from "../../runtime/user-script";
import { DEFAULT_MAIN_MODULE_NAME, MAX_BUNDLE_MODULES, MODULE_NAME_MAX_CHARS } from "./defaults";

export type ModuleInput = { name: string; type: ModuleType; content: string; encoding?: "utf8" | "base64" };

export type BundleInput = {
  moduleCode?: string;
  modules?: ModuleInput[];
  mainModuleName?: string;
  compatibilityFlags?: string[];
};

/** The stored form (format 1): data and wasm content base64, every other type UTF-8 text. */
export type StoredBundle = {
  format: 1;
  mainModuleName: string;
  compatibilityFlags: string[];
  modules: { name: string; type: ModuleType; encoding: "utf8" | "base64"; content: string }[];
};

export type CheckedBundle = {
  stored: StoredBundle;
  /** The canonical JSON of `stored`: the bytes kept in ARTIFACTS. */
  json: string;
  /** sha256 (hex) of `json`: the artifact's address. */
  sha256: string;
  /** Decoded bytes of all modules (what `bundleBytes` limits). */
  sizeBytes: number;
};

const BINARY_TYPES: readonly ModuleType[] = ["data", "wasm"];
/** Module names starting with this are the platform's own (the loader's deploy-check module). */
const RESERVED_PREFIX = "__webhost";

function invalid(location: string, message: string): ApiError {
  const errors: FieldError[] = [{ location, message }];
  return new ApiError("validation_failed", message, { errors });
}

/** Why `name` is not an acceptable module name, or undefined when it is. */
export function moduleNameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > MODULE_NAME_MAX_CHARS) return `must be at most ${MODULE_NAME_MAX_CHARS} characters`;
  if (name.startsWith("/")) return "must be a relative path (no leading '/')";
  if (name.includes("\\")) return "must use '/' between path segments, not '\\'";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(name)) return "must not contain control characters";
  const segments = name.split("/");
  if (segments.includes("..")) return "must not contain '..' segments";
  if (segments.some((s) => s === "" || s === ".")) return "must not contain empty or '.' segments";
  if (name.startsWith(RESERVED_PREFIX)) return `must not start with '${RESERVED_PREFIX}' (reserved by the platform)`;
  return undefined;
}

function checkedFlags(flags: string[] | undefined): string[] {
  const allowed: readonly string[] = ALLOWED_COMPATIBILITY_FLAGS;
  const seen = new Set<string>();
  for (const [i, flag] of (flags ?? []).entries()) {
    if (!allowed.includes(flag)) {
      throw invalid(
        `body.compatibilityFlags[${i}]`,
        `compatibility flag "${flag.slice(0, 64)}" is not allowed; allowed flags: ${allowed.join(", ")}`,
      );
    }
    if (seen.has(flag)) throw invalid(`body.compatibilityFlags[${i}]`, `compatibility flag "${flag}" is listed twice`);
    seen.add(flag);
  }
  return [...seen];
}

/** Decodes base64 strictly (standard alphabet, padding optional); undefined when it is not base64. */
function decodeBase64(text: string): Uint8Array | undefined {
  const compact = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) return undefined;
  try {
    return fromBase64(compact);
  } catch {
    return undefined;
  }
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Checks the deploy body's code and returns its canonical form. `moduleCode` is the shorthand for
 * a bundle of one ES module. `limits.bundleBytes` is the caller's tier limit (decoded bytes).
 */
export async function checkBundle(
  input: BundleInput,
  limits: { bundleBytes: number; tier: string },
  templateCode: string,
): Promise<CheckedBundle> {
  if (input.moduleCode !== undefined && input.modules !== undefined) {
    throw invalid("body.modules", "send either moduleCode (one ES module) or modules (a bundle), not both");
  }
  const compatibilityFlags = checkedFlags(input.compatibilityFlags);
  const mainModuleName = input.mainModuleName ?? (input.modules ? undefined : DEFAULT_MAIN_MODULE_NAME);
  if (mainModuleName === undefined) {
    throw invalid("body.mainModuleName", "a bundle needs mainModuleName: the name of its main (esm) module");
  }
  if (!input.modules) {
    const problem = moduleNameProblem(mainModuleName);
    if (problem) throw invalid("body.mainModuleName", `mainModuleName "${mainModuleName.slice(0, 80)}" ${problem}`);
  }
  const modules: ModuleInput[] = input.modules ?? [
    { name: mainModuleName, type: "esm", content: input.moduleCode ?? templateCode },
  ];
  if (modules.length === 0) throw invalid("body.modules", "modules must hold at least the main module");
  if (modules.length > MAX_BUNDLE_MODULES) {
    throw new ApiError(
      "payload_too_large",
      `the bundle has ${modules.length} modules; the limit is ${MAX_BUNDLE_MODULES} (limit: bundleModules)`,
      { extra: { limit: "bundleModules", max: MAX_BUNDLE_MODULES } },
    );
  }

  const names = new Set<string>();
  const stored: StoredBundle["modules"] = [];
  let sizeBytes = 0;
  for (const [i, m] of modules.entries()) {
    const at = `body.modules[${i}]`;
    const problem = moduleNameProblem(m.name);
    if (problem) throw invalid(`${at}.name`, `module name "${m.name.slice(0, 80)}" ${problem}`);
    if (names.has(m.name)) throw invalid(`${at}.name`, `module "${m.name}" appears twice: module names must be unique`);
    names.add(m.name);
    const encoding = m.encoding ?? "utf8";
    const binary = BINARY_TYPES.includes(m.type);
    if (binary && encoding !== "base64") {
      throw invalid(`${at}.encoding`, `module "${m.name}" is ${m.type}: send its bytes with encoding "base64"`);
    }
    let bytes: Uint8Array;
    if (encoding === "base64") {
      const decoded = decodeBase64(m.content);
      if (!decoded)
        throw invalid(`${at}.content`, `module "${m.name}" has encoding "base64" but its content is not base64`);
      bytes = decoded;
    } else {
      bytes = utf8.encode(m.content);
    }
    sizeBytes += bytes.byteLength;
    if (binary) {
      if (m.type === "wasm" && !isWasm(bytes)) {
        throw invalid(`${at}.content`, `module "${m.name}" is wasm but its bytes are not a WebAssembly module`);
      }
      stored.push({ name: m.name, type: m.type, encoding: "base64", content: bytesToBase64(bytes) });
      continue;
    }
    let text: string;
    try {
      text = encoding === "base64" ? strictUtf8.decode(bytes) : m.content;
    } catch {
      throw invalid(`${at}.content`, `module "${m.name}" is ${m.type}: its decoded bytes must be UTF-8 text`);
    }
    if (m.type === "json") {
      try {
        JSON.parse(text);
      } catch {
        throw invalid(`${at}.content`, `module "${m.name}" is json but its content is not valid JSON`);
      }
    }
    stored.push({ name: m.name, type: m.type, encoding: "utf8", content: text });
  }

  const main = stored.find((m) => m.name === mainModuleName);
  if (!main) {
    throw invalid(
      "body.mainModuleName",
      `mainModuleName "${mainModuleName.slice(0, 80)}" names no module of the bundle`,
    );
  }
  if (main.type !== "esm") {
    throw invalid(
      "body.mainModuleName",
      `the main module "${main.name}" must be an ES module (type "esm"), not ${main.type}`,
    );
  }
  if (sizeBytes > limits.bundleBytes) {
    throw new ApiError(
      "payload_too_large",
      `the bundle is ${sizeBytes} bytes (decoded); the ${limits.tier} plan allows ${limits.bundleBytes} bytes (limit: bundleBytes)`,
      {
        extra: { limit: "bundleBytes", tier: limits.tier, limitBytes: limits.bundleBytes, sizeBytes },
        errors: [{ location: input.modules ? "body.modules" : "body.moduleCode", message: "too large" }],
      },
    );
  }

  const bundle: StoredBundle = { format: 1, mainModuleName, compatibilityFlags, modules: stored };
  const json = JSON.stringify(bundle);
  return { stored: bundle, json, sha256: await sha256Hex(json), sizeBytes };
}

function isWasm(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
}

/** The stored JSON back as runtime modules; throws on anything that is not format 1. */
export function parseStoredBundle(json: string): StoredBundle & { runtimeModules: RuntimeModule[] } {
  const parsed = JSON.parse(json) as StoredBundle;
  if (parsed?.format !== 1 || !Array.isArray(parsed.modules)) throw new Error("unknown artifact format");
  const runtimeModules = parsed.modules.map((m): RuntimeModule => {
    if (m.type === "data" || m.type === "wasm") return { name: m.name, type: m.type, content: fromBase64(m.content) };
    return { name: m.name, type: m.type, content: m.content };
  });
  return { ...parsed, runtimeModules };
}

/** The ARTIFACTS key of a bundle. */
export function artifactObjectKey(sha256: string): string {
  return `bundles/${sha256}.json`;
}
