// Defaults and limits of the deploy payload (POST /v1/agents/:agentId/deploy).

/** Used when a deploy names none; kept at or before what the local runtime supports. */
export const DEFAULT_COMPATIBILITY_DATE = "2026-08-01";
export const DEFAULT_INVOKE_PATH = "/invoke";
export const DEFAULT_MAIN_MODULE_NAME = "index.mjs";
/** Most modules one bundle may hold (every tier). */
export const MAX_BUNDLE_MODULES = 200;
/** Longest module name, in characters. */
export const MODULE_NAME_MAX_CHARS = 256;
