// Defaults and limits of the deploy payload (POST /v1/agents/:agentId/deploy).

/** Used when a deploy names none; kept at or before what the local runtime supports. */
export const DEFAULT_COMPATIBILITY_DATE = "2026-08-01";
export const DEFAULT_INVOKE_PATH = "/invoke";
export const DEFAULT_MAIN_MODULE_NAME = "index.mjs";
/** Largest accepted moduleCode, in UTF-8 bytes (D1 rows stay well under their 2 MB limit). */
export const MODULE_CODE_MAX_BYTES = 1024 * 1024;
