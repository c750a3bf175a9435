// Request and response shapes of the parts of Cloudflare's API this project calls, written by
// hand from the published API reference (Workers for Platforms "Upload Worker Module", "Delete
// Worker", "Delete Scripts in Namespace") and the multipart upload metadata reference. They are a
// subset of the official `cloudflare` SDK's `ScriptUpdateParams.Metadata` (checked against
// cloudflare@7.3.0 when written; see docs/production.md, "Limits and what could not be confirmed against Cloudflare"). The SDK is not a dependency: it
// is ~71 MB / 17k files for the three binding kinds used here.

/** One error or message entry of the v4 envelope. */
export type CloudflareMessage = { code: number; message: string; documentation_url?: string };

/** The v4 API envelope every JSON answer is wrapped in. */
export type CloudflareEnvelope<T> = {
  success: boolean;
  errors: CloudflareMessage[];
  messages: CloudflareMessage[];
  result: T;
};

export type PlainTextBinding = { type: "plain_text"; name: string; text: string };
export type SecretTextBinding = { type: "secret_text"; name: string; text: string };
/**
 * A service binding to another Worker of the account. `entrypoint` names a `WorkerEntrypoint`
 * class the target exports; `props` becomes `ctx.props` inside that entrypoint (Workers for
 * Platforms "Custom bindings"; wrangler sends the same field).
 */
export type ServiceBinding = {
  type: "service";
  name: string;
  service: string;
  entrypoint?: string;
  environment?: string;
  props?: Record<string, string>;
};

export type WorkerBinding = PlainTextBinding | SecretTextBinding | ServiceBinding;

/** The `metadata` part of a module Worker upload. */
export type WorkerUploadMetadata = {
  main_module: string;
  compatibility_date: string;
  compatibility_flags?: string[];
  bindings: WorkerBinding[];
  tags?: string[];
  /** Workers whose tail() handler receives each invocation's trace (logs, exceptions, outcome). */
  tail_consumers?: Array<{ service: string; environment?: string; namespace?: string }>;
};

/** One module part of the multipart upload. */
export type WorkerModulePart = { name: string; content: string | Uint8Array; contentType: string };

/** Content type of an ES module part. */
export const ES_MODULE_CONTENT_TYPE = "application/javascript+module";

/** The content type of each module kind's part: Cloudflare reads the module's type from it. */
export const MODULE_CONTENT_TYPES = {
  esm: ES_MODULE_CONTENT_TYPE,
  cjs: "application/javascript",
  text: "text/plain",
  data: "application/octet-stream",
  wasm: "application/wasm",
  json: "application/json",
} as const;

/** `result` of a successful upload (only the fields this project reads). */
export type UploadScriptResult = {
  id?: string;
  etag?: string;
  startup_time_ms?: number;
  [field: string]: unknown;
};

/** `result` of DELETE .../scripts?tags=… (bulk delete). */
export type BulkDeleteResult = {
  deleted?: { id?: string }[];
  deleted_count?: number;
  has_more?: boolean;
};
