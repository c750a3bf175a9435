// A fake of the slice of Cloudflare's v4 API the gateway uses (Workers for Platforms namespace
// scripts), shared by the tests (inside workerd, as an injected fetch) and by
// scripts/fake-cloudflare-api.mjs (a local HTTP server for `wrangler dev --env production`).
// It checks each request the way Cloudflare documents it and answers with real-shaped envelopes:
//   PUT    /accounts/{a}/workers/dispatch/namespaces/{ns}/scripts/{name}   multipart upload
//   DELETE /accounts/{a}/workers/dispatch/namespaces/{ns}/scripts/{name}   delete one script
//   DELETE /accounts/{a}/workers/dispatch/namespaces/{ns}/scripts?tags=t:yes delete by tag
//   GET    /accounts/{a}/workers/dispatch/namespaces/{ns}/scripts/{name}   script details
// Error codes used: 10000 authentication, 7000 no route, 7001 method not allowed, 7003 could not
// route (bad account), 10001 content type, 10007 not found, 10021 validation failed (documented
// x-cfLinkErrors / Workers error tables). The namespace-not-found code (100119) is illustrative.
// Only web-standard APIs, so it runs unchanged in workerd and in Node 22.

const SCRIPT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const MODULE_TYPES = new Set([
  "application/javascript+module",
  "text/javascript+module",
  "application/javascript",
  "text/javascript",
  "application/wasm",
  "text/plain",
  "application/octet-stream",
  "application/json",
  "application/source-map",
]);
const ES_MODULE_TYPES = new Set(["application/javascript+module", "text/javascript+module"]);
const JS_TYPES = new Set([...ES_MODULE_TYPES, "application/javascript", "text/javascript"]);
const BINARY_TYPES = new Set(["application/wasm", "application/octet-stream"]);
const NODEJS_COMPAT_FLAGS = ["nodejs_compat", "nodejs_compat_v2"];

/** Static import / export-from / require specifiers of a JavaScript module (good enough for a fake). */
function importSpecifiers(code: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /\bimport\s+(?:[\w*${}\s,]+?\s+from\s+)?["']([^"']+)["']/g,
    /\bexport\s+(?:\*|\{[^}]*\})(?:\s+as\s+\w+)?\s+from\s+["']([^"']+)["']/g,
    /\brequire\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) specs.push(m[1]!);
  return specs;
}

/** Where the Workers runtime looks for `spec` imported from module `importer` (both bundle names). */
function resolveModule(spec: string, importer: string): string {
  const dir = importer.includes("/") ? importer.slice(0, importer.lastIndexOf("/") + 1) : "";
  return new URL(spec, `file:///${dir}`).pathname.slice(1);
}

const toBase64 = (bytes: Uint8Array) => {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
};

type Binding = { type: string; name: string; [field: string]: any };

export type FakeScript = {
  metadata: {
    main_module: string;
    compatibility_date?: string;
    compatibility_flags?: string[];
    bindings?: Binding[];
    tags?: string[];
    tail_consumers?: Array<{ service: string; environment?: string; namespace?: string }>;
    [field: string]: unknown;
  };
  /** Text parts as text; binary parts (wasm, octet-stream) as base64 of their bytes. */
  modules: Array<{ name: string; contentType: string; content: string }>;
  tags: string[];
  etag: string;
  createdOn: string;
  modifiedOn: string;
};

export type FakeRequestRecord = {
  method: string;
  path: string;
  query: string;
  status: number;
  summary?: string;
  error?: string;
};

export type FakeFault = {
  method?: string;
  pathIncludes?: string;
  times?: number;
  status?: number;
  errors?: Array<{ code: number; message: string }>;
  rawBody?: string;
  contentType?: string;
  hang?: boolean;
  networkError?: string;
};

export type FakeCloudflareApi = {
  /** The fake's fetch: give it to the Cloudflare client, or call it from an HTTP server. */
  fetch(request: Request): Promise<Response>;
  /** Uploaded scripts by name. */
  scripts: Map<string, FakeScript>;
  /** Every request seen, in order. */
  requests: FakeRequestRecord[];
  /**
   * Makes the next `times` matching requests fail: with `status` (+ `errors`, or a non-JSON
   * `rawBody`), by hanging until the caller aborts (`hang`), or as a network error.
   */
  inject(fault: FakeFault): void;
};

export type FakeCloudflareApiOptions = {
  accountId: string;
  apiToken: string;
  namespace: string;
  basePath?: string;
  deletePageSize?: number;
  log?: (line: string) => void;
};

type Envelope = { result?: unknown; errors?: Array<{ code: number; message: string }>; messages?: unknown[] };

function envelope(status: number, { result = null, errors = [], messages = [] }: Envelope = {}): Response {
  return new Response(JSON.stringify({ success: errors.length === 0, errors, messages, result }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

const fail = (status: number, code: number, message: string) => ({ status, errors: [{ code, message }] });

class Rejection extends Error {
  status: number;
  code: number;
  constructor(status: number, code: number, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function reject(status: number, code: number, message: string): never {
  throw new Rejection(status, code, message);
}

/** Validates a multipart upload; returns what to store. Throws Rejection. */
async function validateUpload(
  request: Request,
  url: URL,
): Promise<Omit<FakeScript, "etag" | "createdOn" | "modifiedOn">> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!/^multipart\/form-data;\s*boundary=/i.test(contentType)) {
    reject(400, 10001, `Unsupported or unexpected Content Type: ${contentType || "none"}`);
  }
  let form: FormData;
  try {
    form = await request.formData();
  } catch {
    reject(400, 10001, "Could not parse multipart body");
  }
  const metadataPart = form.get("metadata");
  if (metadataPart === null) reject(400, 10021, "Missing metadata part");
  const metadataText = typeof metadataPart === "string" ? metadataPart : await (metadataPart as Blob).text();
  let metadata: any;
  try {
    metadata = JSON.parse(metadataText);
  } catch {
    reject(400, 10021, "metadata is not valid JSON");
  }
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    reject(400, 10021, "metadata must be a JSON object");
  }
  if (typeof metadata.main_module !== "string" || metadata.main_module === "") {
    reject(400, 10021, "metadata.main_module is required for a module Worker");
  }

  const modules: FakeScript["modules"] = [];
  for (const [name, value] of form.entries()) {
    if (name === "metadata") continue;
    if (typeof value === "string") reject(400, 10021, `part ${name} must be a file part with a content type`);
    const file = value as unknown as Blob;
    const type = (file.type ?? "").split(";")[0]!.trim().toLowerCase();
    if (!MODULE_TYPES.has(type)) reject(400, 10021, `part ${name} has unsupported content type "${file.type}"`);
    if (modules.some((m) => m.name === name)) reject(400, 10021, `two parts are named ${name}`);
    if (BINARY_TYPES.has(type)) {
      const bytes = new Uint8Array(await file.arrayBuffer());
      if (
        type === "application/wasm" &&
        !(bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d)
      ) {
        reject(
          400,
          10021,
          `Uncaught CompileError: WebAssembly.Module(): expected magic word 00 61 73 6d (module ${name})`,
        );
      }
      modules.push({ name, contentType: type, content: toBase64(bytes) });
      continue;
    }
    const text = await file.text();
    if (type === "application/json") {
      try {
        JSON.parse(text);
      } catch {
        reject(400, 10021, `Uncaught SyntaxError: module ${name} is not valid JSON`);
      }
    }
    modules.push({ name, contentType: type, content: text });
  }
  const main = modules.find((m) => m.name === metadata.main_module);
  if (!main) reject(400, 10021, `main_module "${metadata.main_module}" names no uploaded part`);
  if (!ES_MODULE_TYPES.has(main.contentType)) {
    reject(400, 10021, `main module part must be application/javascript+module, got ${main.contentType}`);
  }
  if (metadata.compatibility_date !== undefined && !DATE.test(String(metadata.compatibility_date))) {
    reject(400, 10021, "compatibility_date must be YYYY-MM-DD");
  }
  if (
    metadata.compatibility_flags !== undefined &&
    (!Array.isArray(metadata.compatibility_flags) ||
      metadata.compatibility_flags.some((f: unknown) => typeof f !== "string"))
  ) {
    reject(400, 10021, "compatibility_flags must be an array of strings");
  }
  // The startup check resolves every import, as the runtime would: a module not uploaded (or a
  // node: built-in without nodejs_compat) fails the upload the way a top-level error does.
  const flags: string[] = metadata.compatibility_flags ?? [];
  const nodeCompat = flags.some((f) => NODEJS_COMPAT_FLAGS.includes(f));
  for (const m of modules) {
    if (!JS_TYPES.has(m.contentType)) continue;
    for (const spec of importSpecifiers(m.content)) {
      if (spec.startsWith("cloudflare:")) continue;
      if (spec.startsWith("node:") && nodeCompat) continue;
      const resolved = spec.startsWith("node:") ? spec : resolveModule(spec, m.name);
      if (!modules.some((p) => p.name === resolved)) {
        reject(400, 10021, `Uncaught Error: No such module "${resolved}". imported from "${m.name}"`);
      }
    }
  }

  const bindings: Binding[] = metadata.bindings ?? [];
  if (!Array.isArray(bindings)) reject(400, 10021, "bindings must be an array");
  const names = new Set<string>();
  for (const [i, b] of bindings.entries()) {
    const at = `bindings[${i}]`;
    if (typeof b !== "object" || b === null) reject(400, 10021, `${at} must be an object`);
    if (typeof b.name !== "string" || !IDENTIFIER.test(b.name)) reject(400, 10021, `${at}.name must be an identifier`);
    if (names.has(b.name)) reject(400, 10021, `duplicate binding name ${b.name}`);
    names.add(b.name);
    switch (b.type) {
      case "plain_text":
      case "secret_text":
        if (typeof b.text !== "string") reject(400, 10021, `${at} (${b.type}) needs a string "text"`);
        break;
      case "service":
        if (typeof b.service !== "string" || !SCRIPT_NAME.test(b.service)) {
          reject(400, 10021, `${at} (service) needs "service", a Worker name`);
        }
        if (b.entrypoint !== undefined && (typeof b.entrypoint !== "string" || !IDENTIFIER.test(b.entrypoint))) {
          reject(400, 10021, `${at}.entrypoint must be an exported class name`);
        }
        if (b.props !== undefined && (typeof b.props !== "object" || b.props === null || Array.isArray(b.props))) {
          reject(400, 10021, `${at}.props must be an object`);
        }
        break;
      default:
        reject(400, 10021, `${at} has a binding type this fake does not accept: ${b.type}`);
    }
  }
  // Secret values must travel only as secret_text: never as plain text, never in the URL.
  const secrets = bindings.filter((b) => b.type === "secret_text" && b.text.length >= 8).map((b) => b.text);
  for (const b of bindings) {
    if (b.type === "plain_text" && secrets.includes(b.text)) {
      reject(400, 10021, `plain_text binding ${b.name} carries a value also bound as a secret`);
    }
    if (b.type === "service" && b.props && secrets.some((s) => JSON.stringify(b.props).includes(s))) {
      reject(400, 10021, `service binding ${b.name} props carry a secret value`);
    }
  }
  const decodedUrl = decodeURIComponent(url.href);
  if (secrets.some((s) => decodedUrl.includes(s))) reject(400, 10021, "a secret value appears in the URL");

  // Tail consumers, as the upload API takes them: Workers of the same account, by script name,
  // whose tail() handler receives this script's traces. A script cannot tail itself.
  if (metadata.tail_consumers !== undefined) {
    const consumers = metadata.tail_consumers;
    if (!Array.isArray(consumers)) reject(400, 10021, "tail_consumers must be an array");
    if (consumers.length > 20) reject(400, 10021, "at most 20 tail_consumers per script");
    for (const [i, t] of consumers.entries()) {
      const at = `tail_consumers[${i}]`;
      if (typeof t !== "object" || t === null || Array.isArray(t)) reject(400, 10021, `${at} must be an object`);
      const unknown = Object.keys(t).filter((k) => !["service", "environment", "namespace"].includes(k));
      if (unknown.length > 0) reject(400, 10021, `${at} has unknown field(s): ${unknown.join(", ")}`);
      if (typeof t.service !== "string" || !SCRIPT_NAME.test(t.service)) {
        reject(400, 10021, `${at} needs "service", a Worker name`);
      }
      for (const k of ["environment", "namespace"]) {
        if (t[k] !== undefined && (typeof t[k] !== "string" || t[k] === ""))
          reject(400, 10021, `${at}.${k} must be a non-empty string`);
      }
      if (t.service === url.pathname.split("/").pop())
        reject(400, 10021, `${at}: a Worker cannot be its own tail consumer`);
    }
  }

  const tags: string[] = metadata.tags ?? [];
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== "string" || t === "" || /[,&]/.test(t))) {
    reject(400, 10021, "tags must be non-empty strings without ',' or '&'");
  }
  if (tags.length > 8) reject(400, 10021, "at most 8 tags per script");
  return { metadata, modules, tags };
}

function parseTagFilter(raw: string | null): Array<{ tag: string; want: boolean }> | null | undefined {
  if (!raw) return null;
  const filter: Array<{ tag: string; want: boolean }> = [];
  for (const item of raw.split(",")) {
    const m = /^(.+):(yes|no)$/.exec(item);
    if (!m) return undefined;
    filter.push({ tag: m[1]!, want: m[2] === "yes" });
  }
  return filter;
}

export function createFakeCloudflareApi(options: FakeCloudflareApiOptions): FakeCloudflareApi {
  const basePath = options.basePath ?? "/client/v4";
  const deletePageSize = options.deletePageSize ?? 100;
  const scripts = new Map<string, FakeScript>();
  const requests: FakeRequestRecord[] = [];
  const faults: Array<FakeFault & { times: number }> = [];
  let uploads = 0;

  function faultFor(method: string, path: string): FakeFault | null {
    const i = faults.findIndex(
      (f) => (!f.method || f.method === method) && (!f.pathIncludes || path.includes(f.pathIncludes)),
    );
    if (i < 0) return null;
    const f = faults[i]!;
    f.times -= 1;
    if (f.times <= 0) faults.splice(i, 1);
    return f;
  }

  function record(entry: FakeRequestRecord): void {
    requests.push(entry);
    if (options.log) {
      const parts = [`${entry.method} ${entry.path}${entry.query ? `?${entry.query}` : ""} -> ${entry.status}`];
      if (entry.summary) parts.push(entry.summary);
      if (entry.error) parts.push(`error: ${entry.error}`);
      options.log(parts.join("  "));
    }
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const method = request.method.toUpperCase();
    const path = url.pathname.startsWith(basePath) ? url.pathname.slice(basePath.length) : url.pathname;
    const entry: FakeRequestRecord = { method, path, query: url.search.slice(1), status: 0 };

    const fault = faultFor(method, path);
    if (fault?.networkError) {
      entry.status = -1;
      entry.error = fault.networkError;
      record(entry);
      throw new TypeError(fault.networkError);
    }
    if (fault?.hang) {
      entry.status = -1;
      entry.error = "no answer (hang)";
      record(entry);
      return new Promise<Response>((_, rejectPromise) => {
        const abort = () => rejectPromise(new DOMException("The operation was aborted.", "AbortError"));
        if (request.signal.aborted) abort();
        else request.signal.addEventListener("abort", abort);
      });
    }

    if (request.headers.get("authorization") !== `Bearer ${options.apiToken}`) {
      entry.status = 401;
      record({ ...entry, error: "bad or missing bearer token" });
      return envelope(401, fail(401, 10000, "Authentication error"));
    }
    if (fault) {
      entry.status = fault.status ?? 500;
      record({ ...entry, error: "injected fault" });
      if (fault.rawBody !== undefined) {
        return new Response(fault.rawBody, {
          status: fault.status ?? 500,
          headers: { "content-type": fault.contentType ?? "text/html" },
        });
      }
      return envelope(fault.status ?? 500, { errors: fault.errors ?? [] });
    }

    const m = /^\/accounts\/([^/]+)\/workers\/dispatch\/namespaces\/([^/]+)\/scripts(?:\/([^/]+))?$/.exec(path);
    if (!m) {
      entry.status = 404;
      record(entry);
      return envelope(404, fail(404, 7000, "No route for that URI"));
    }
    const [, account = "", namespace = "", rawName] = m;
    if (decodeURIComponent(account) !== options.accountId) {
      entry.status = 404;
      record(entry);
      return envelope(
        404,
        fail(404, 7003, "Could not route to this account, perhaps your object identifier is invalid?"),
      );
    }
    if (decodeURIComponent(namespace) !== options.namespace) {
      entry.status = 404;
      record(entry);
      return envelope(404, fail(404, 100119, `dispatch namespace ${decodeURIComponent(namespace)} not found`));
    }
    const name = rawName === undefined ? undefined : decodeURIComponent(rawName);
    if (name !== undefined && !SCRIPT_NAME.test(name)) {
      entry.status = 400;
      record(entry);
      return envelope(400, fail(400, 10021, `invalid script name ${name}`));
    }

    try {
      if (name !== undefined && method === "PUT") {
        const upload = await validateUpload(request, url);
        uploads += 1;
        const etag = `etag-${uploads}`;
        const now = new Date().toISOString();
        const previous = scripts.get(name);
        scripts.set(name, { ...upload, etag, createdOn: previous?.createdOn ?? now, modifiedOn: now });
        entry.status = 200;
        entry.summary = `main_module=${upload.metadata.main_module} bindings=[${(upload.metadata.bindings ?? [])
          .map((b) => `${b.name}:${b.type}`)
          .join(",")}] tags=[${upload.tags.join(",")}]`;
        record(entry);
        return envelope(200, {
          result: {
            id: name,
            etag,
            startup_time_ms: 3,
            compatibility_date: upload.metadata.compatibility_date,
            compatibility_flags: upload.metadata.compatibility_flags ?? [],
            created_on: previous?.createdOn ?? now,
            modified_on: now,
            tags: upload.tags,
            usage_model: "standard",
          },
        });
      }
      if (name !== undefined && method === "DELETE") {
        if (!scripts.delete(name)) {
          entry.status = 404;
          record(entry);
          return envelope(404, fail(404, 10007, "This Worker does not exist on your account."));
        }
        entry.status = 200;
        record(entry);
        return envelope(200, { result: null });
      }
      if (name !== undefined && method === "GET") {
        const s = scripts.get(name);
        entry.status = s ? 200 : 404;
        record(entry);
        if (!s) return envelope(404, fail(404, 10007, "This Worker does not exist on your account."));
        return envelope(200, {
          result: {
            created_on: s.createdOn,
            modified_on: s.modifiedOn,
            dispatch_namespace: options.namespace,
            script: { id: name, etag: s.etag, tags: s.tags },
          },
        });
      }
      if (name === undefined && method === "DELETE") {
        const filter = parseTagFilter(url.searchParams.get("tags"));
        if (filter === undefined) reject(400, 10021, "tags must be a comma-separated list of tag:yes|no");
        if (filter === null) reject(400, 10021, "refusing to delete every script: give a tags filter");
        const matching = [...scripts.entries()]
          .filter(([, s]) => filter.every((f) => s.tags.includes(f.tag) === f.want))
          .map(([n]) => n);
        const page = matching.slice(0, deletePageSize);
        for (const n of page) scripts.delete(n);
        entry.status = 200;
        entry.summary = `deleted=${page.length}`;
        record(entry);
        return envelope(200, {
          result: {
            deleted: page.map((id) => ({ id })),
            deleted_count: page.length,
            has_more: matching.length > page.length,
          },
        });
      }
      entry.status = 405;
      record(entry);
      return envelope(405, fail(405, 7001, "Method not allowed"));
    } catch (err) {
      if (!(err instanceof Rejection)) throw err;
      entry.status = err.status;
      entry.error = err.message;
      record(entry);
      return envelope(err.status, fail(err.status, err.code, err.message));
    }
  }

  return {
    fetch: (request) => handle(request),
    scripts,
    requests,
    inject(fault) {
      faults.push({ times: 1, ...fault });
    },
  };
}
