// A bounded, seeded property test of the gateway against its own OpenAPI document, in the manner
// of Schemathesis: for every operation, requests generated from the document's parameter and body
// schemas (valid ones, edge values and deliberate mistakes, with and without credentials), and
// for every answer the checks a generated client relies on:
//   - never a 500, and the status is one the operation documents;
//   - the content type is one documented for that status, and a JSON body (each stream event,
//     for text/event-stream) validates against the documented schema;
//   - the headers the document marks required are sent, and every client-facing header sent is
//     documented for that status;
//   - a method the path does not document is 405 with `Allow` naming exactly the documented ones.
// Runtime-neutral (no Node APIs): the Workers-runtime tests run it through the worker's own fetch
// handler, the e2e suite over HTTP against `wrangler dev`.

export type OpenApiDoc = {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas?: Record<string, Schema>; headers?: Record<string, Header>; parameters?: Record<string, any> };
};
type Schema = Record<string, any>;
type Header = { required?: boolean; schema?: Schema };
type Operation = {
  operationId: string;
  parameters?: any[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { headers?: Record<string, any>; content?: Record<string, any> }>;
  security?: unknown[];
};

/** Real ids of a world the requests can name, so they reach past the 404s. */
export type World = { token: string; agentId: string; deploymentId: string; secretName: string };

export type ConformanceOptions = {
  doc: OpenApiDoc;
  send: (request: Request) => Promise<Response>;
  baseUrl: string;
  world: World;
  /** Requests per operation (the run makes about operations × this many). */
  perOperation: number;
  seed: number;
};

export type ConformanceReport = { requests: number; statuses: Record<string, number>; failures: string[] };

/** Header names a client reads; if the server sends one, the document must declare it. */
export const CLIENT_FACING_HEADERS = [
  "x-request-id",
  "x-deployment-id",
  "location",
  "retry-after",
  "ratelimit",
  "ratelimit-policy",
  "idempotent-replayed",
  "allow",
];

const METHODS = ["get", "put", "post", "delete", "patch"];
const BODY_KINDS = ["valid", "mutated", "valid", "malformed", "mutated", "wrong-type", "none"] as const;

export async function runConformance(opts: ConformanceOptions): Promise<ConformanceReport> {
  const rng = mulberry32(opts.seed);
  const report: ConformanceReport = { requests: 0, statuses: {}, failures: [] };
  const fail = (what: string) => {
    if (report.failures.length < 50) report.failures.push(what);
  };
  for (const [path, item] of Object.entries(opts.doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      for (let i = 0; i < opts.perOperation; i++) {
        const request = generateRequest(opts, path, method, op, rng, i);
        const res = await opts.send(request.request);
        report.requests++;
        report.statuses[res.status] = (report.statuses[res.status] ?? 0) + 1;
        const label = `${op.operationId} ${request.describe} → ${res.status}`;
        await checkResponse(opts.doc, op, res, (m) => fail(`${label}: ${m}`));
      }
    }
    // A method the path does not document.
    const documented = Object.keys(item);
    const other = METHODS.find((m) => !documented.includes(m));
    if (other) {
      const concrete = fillPath(path, opts.world, rng, true);
      const res = await opts.send(
        new Request(`${opts.baseUrl}${concrete}`, {
          method: other.toUpperCase(),
          headers: { authorization: `Bearer ${opts.world.token}` },
        }),
      );
      report.requests++;
      report.statuses[res.status] = (report.statuses[res.status] ?? 0) + 1;
      const expected = [...documented.map((m) => m.toUpperCase()), ...(documented.includes("get") ? ["HEAD"] : [])]
        .sort()
        .join(", ");
      if (res.status !== 405) fail(`${other.toUpperCase()} ${concrete}: ${res.status}, not 405`);
      else if (res.headers.get("allow") !== expected)
        fail(`${other.toUpperCase()} ${concrete}: Allow is ${res.headers.get("allow")}, expected ${expected}`);
      await res.body?.cancel();
    }
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Requests

function generateRequest(
  opts: ConformanceOptions,
  path: string,
  method: string,
  op: Operation,
  rng: () => number,
  i: number,
): { request: Request; describe: string } {
  const doc = opts.doc;
  // The first request of each operation is the most plausible one; later ones vary more.
  const plausible = i === 0;
  const headers: Record<string, string> = {};
  const authenticated = plausible || rng() < 0.9;
  if (authenticated) headers.authorization = `Bearer ${opts.world.token}`;
  else if (rng() < 0.5) headers.authorization = `Bearer ${toAscii(randomString(rng, 0, 40))}`;

  const query = new URLSearchParams();
  for (const raw of op.parameters ?? []) {
    const param = resolve(doc, raw);
    if (param.in === "query") {
      if (!param.required && !plausible && rng() < 0.5) continue;
      const value =
        param.name === "agentId" && (plausible || rng() < 0.7)
          ? opts.world.agentId
          : String(generate(doc, param.schema, rng, plausible ? 0 : 0.3, 0));
      query.set(param.name, value);
    } else if (param.in === "header") {
      // Header values stay ASCII: a client cannot send anything else.
      if (rng() < 0.3) headers[param.name.toLowerCase()] = toAscii(String(generate(doc, param.schema, rng, 0.3, 0)));
    }
  }
  const concrete = fillPath(path, opts.world, rng, plausible);
  let body: string | undefined;
  const content = op.requestBody?.content;
  if (content) {
    const [mediaType, media] = Object.entries(content)[0]!;
    // Each kind of body in turn, so even a short run tries every kind on every operation.
    const kind = BODY_KINDS[i % BODY_KINDS.length];
    if (kind === "valid" || kind === "mutated") {
      headers["content-type"] = mediaType;
      body = JSON.stringify(generate(doc, media.schema, rng, kind === "valid" ? 0 : 0.25, 0));
    } else if (kind === "malformed") {
      headers["content-type"] = mediaType;
      body = pick(rng, ["{", "", "null", "[]", '{"a":', "\u0000"]);
    } else if (kind === "wrong-type") {
      headers["content-type"] = pick(rng, ["text/plain", "application/x-www-form-urlencoded", "application/xml"]);
      body = "name=x";
    }
  }
  const qs = query.toString();
  const url = `${opts.baseUrl}${concrete}${qs ? `?${qs}` : ""}`;
  const describe = `${method.toUpperCase()} ${concrete}${qs ? `?${qs}` : ""}${body !== undefined ? ` ${body.slice(0, 200)}` : ""}${authenticated ? "" : " (no valid token)"}`;
  return {
    request: new Request(url, { method: method.toUpperCase(), headers, ...(body !== undefined ? { body } : {}) }),
    describe,
  };
}

function fillPath(path: string, world: World, rng: () => number, plausible: boolean): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const real: Record<string, string> = {
      agentId: world.agentId,
      deploymentId: world.deploymentId,
      name: world.secretName,
      keyId: "key_00000000000000000000000000",
      runId: "run_00000000000000000000000000",
    };
    if ((plausible || rng() < 0.7) && real[name]) return real[name];
    // A plausible path never holds a dot segment: URL parsing would resolve it to another path.
    if (plausible) return `x-${name}`;
    return encodeURIComponent(
      pick(rng, ["x", "agt_", "%", "..", "a".repeat(70), "ünï", "0", randomString(rng, 1, 20)]),
    );
  });
}

/** A value for `schema`; with probability `chaos` at each level, something it does not allow. */
function generate(doc: OpenApiDoc, schemaOrRef: Schema, rng: () => number, chaos: number, depth: number): unknown {
  const schema = resolve(doc, schemaOrRef);
  if (rng() < chaos) return pick(rng, [null, 0, -1, 1.5, "", "x".repeat(300), true, [], {}, 2 ** 53, "\u202e"]);
  if (schema.oneOf || schema.anyOf) return generate(doc, pick(rng, schema.oneOf ?? schema.anyOf), rng, chaos, depth);
  if (schema.enum) return pick(rng, schema.enum);
  if (schema.example !== undefined && rng() < 0.6) return schema.example;
  const type = Array.isArray(schema.type) ? pick(rng, schema.type) : schema.type;
  switch (type) {
    case "string": {
      if (schema.format === "date") return new Date(Date.now() - Math.floor(rng() * 1e11)).toISOString().slice(0, 10);
      return randomString(rng, schema.minLength ?? 0, Math.min(schema.maxLength ?? 24, 24));
    }
    case "integer":
    case "number": {
      const min = schema.minimum ?? 0;
      const max = Math.min(schema.maximum ?? 1e6, 1e12);
      const edge = pick(rng, [min, max, min + Math.floor(rng() * (max - min + 1))]);
      return type === "integer" ? Math.floor(edge) : edge;
    }
    case "boolean":
      return rng() < 0.5;
    case "null":
      return null;
    case "array": {
      if (depth > 3) return [];
      const n = Math.min(schema.minItems ?? 0, 3) + Math.floor(rng() * 3);
      const max = schema.maxItems ?? n;
      return Array.from({ length: Math.min(n, max) }, () => generate(doc, schema.items ?? {}, rng, chaos, depth + 1));
    }
    case "object": {
      if (depth > 3) return {};
      const out: Record<string, unknown> = {};
      const required: string[] = schema.required ?? [];
      for (const [name, prop] of Object.entries<Schema>(schema.properties ?? {})) {
        if (required.includes(name) || rng() < 0.5) out[name] = generate(doc, prop, rng, chaos, depth + 1);
      }
      if (chaos > 0 && rng() < chaos) out[randomString(rng, 1, 8)] = "extra";
      return out;
    }
    default:
      return pick(rng, ["x", 1, null, {}]);
  }
}

// ---------------------------------------------------------------------------------------------
// Answers

async function checkResponse(doc: OpenApiDoc, op: Operation, res: Response, fail: (m: string) => void) {
  const text = await res.text();
  if (res.status === 500) return fail(`a 500: ${text.slice(0, 300)}`);
  const documented = op.responses[String(res.status)];
  if (!documented)
    return fail(`status not documented (${Object.keys(op.responses).join(", ")}): ${text.slice(0, 300)}`);

  const declared = Object.fromEntries(Object.entries(documented.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  for (const name of CLIENT_FACING_HEADERS) {
    if (res.headers.has(name) && !(name in declared)) fail(`header ${name} sent but not documented`);
  }
  for (const [name, ref] of Object.entries(declared)) {
    const header = resolve(doc, ref) as Header;
    const value = res.headers.get(name);
    if (header.required && value === null) fail(`required header ${name} missing`);
    if (value !== null && header.schema) {
      const problems = validate(doc, header.schema, value, `header ${name}`);
      if (problems.length) fail(problems.join("; "));
    }
  }

  const contentType = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
  if (!documented.content) {
    if (text.length > 0) fail(`a body where none is documented: ${text.slice(0, 200)}`);
    return;
  }
  const media = documented.content[contentType];
  if (!media) return fail(`content type ${contentType} not documented (${Object.keys(documented.content).join(", ")})`);
  if (contentType === "text/event-stream") {
    const item = media["x-itemSchema"];
    if (!item) return;
    for (const block of text.replaceAll("\r\n", "\n").split("\n\n")) {
      if (!block.trim()) continue;
      const lines = block.split("\n");
      const event =
        lines
          .find((l) => l.startsWith("event:"))
          ?.slice(6)
          .trim() ?? "message";
      const data = lines
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      let parsed: unknown;
      try {
        parsed = JSON.parse(data);
      } catch {
        fail(`stream event ${event} has data that is not JSON: ${data.slice(0, 200)}`);
        continue;
      }
      const problems = validate(doc, item, { event, data: parsed }, "event");
      if (problems.length) fail(problems.join("; "));
    }
    return;
  }
  if (!contentType.endsWith("json")) return;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return fail(`body is not JSON: ${text.slice(0, 200)}`);
  }
  const problems = validate(doc, media.schema, body, "body");
  if (problems.length) fail(`${problems.slice(0, 5).join("; ")} in ${text.slice(0, 300)}`);
}

/** A JSON Schema check of the subset the document uses; returns what does not conform. */
export function validate(doc: OpenApiDoc, schemaOrRef: Schema, value: unknown, at: string): string[] {
  const schema = resolve(doc, schemaOrRef);
  const errors: string[] = [];
  if (schema.oneOf || schema.anyOf) {
    const branches: Schema[] = schema.oneOf ?? schema.anyOf;
    const matching = branches.filter((b) => validate(doc, b, value, at).length === 0).length;
    if (schema.oneOf ? matching !== 1 : matching === 0)
      errors.push(`${at}: matches ${matching} of the ${schema.oneOf ? "oneOf" : "anyOf"} branches`);
    return errors;
  }
  if (schema.enum && !schema.enum.some((e: unknown) => e === value))
    errors.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum).slice(0, 120)}`);
  if (schema.type !== undefined) {
    const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => hasType(value, t))) {
      errors.push(`${at}: ${JSON.stringify(value)?.slice(0, 80)} is not ${types.join(" | ")}`);
      return errors;
    }
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && [...value].length < schema.minLength)
      errors.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && [...value].length > schema.maxLength)
      errors.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.pattern && !new RegExp(schema.pattern, "u").test(value))
      errors.push(`${at}: does not match ${schema.pattern}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${at}: above ${schema.maximum}`);
  }
  if (Array.isArray(value) && schema.items) {
    for (const [i, v] of value.entries()) errors.push(...validate(doc, schema.items, v, `${at}[${i}]`));
  }
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const name of schema.required ?? []) if (!(name in obj)) errors.push(`${at}.${name}: missing`);
    const props: Record<string, Schema> = schema.properties ?? {};
    for (const [name, v] of Object.entries(obj)) {
      if (props[name]) errors.push(...validate(doc, props[name], v, `${at}.${name}`));
      else if (schema.additionalProperties === false) errors.push(`${at}.${name}: not allowed`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === "object")
        errors.push(...validate(doc, schema.additionalProperties, v, `${at}.${name}`));
    }
  }
  return errors;
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case "null":
      return value === null;
    case "array":
      return Array.isArray(value);
    case "object":
      return value !== null && typeof value === "object" && !Array.isArray(value);
    case "integer":
      return Number.isInteger(value);
    case "number":
      return typeof value === "number";
    default:
      return typeof value === type;
  }
}

function resolve(doc: OpenApiDoc, schema: any): any {
  let current = schema ?? {};
  for (let i = 0; i < 10 && typeof current.$ref === "string"; i++) {
    const [, , kind, name] = (current.$ref as string).split("/");
    current = (doc.components as any)[kind!]?.[name!] ?? {};
  }
  return current;
}

// ---------------------------------------------------------------------------------------------
// Randomness: seeded, so a failure can be replayed with the same seed.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(rng: () => number, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)]!;
}

const ALPHABET = [..."abcXYZ019_-. /%ü€😀\"'<>"];

function toAscii(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?");
}

function randomString(rng: () => number, min: number, max: number): string {
  const length = min + Math.floor(rng() * (Math.max(max, min) - min + 1));
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHABET[Math.floor(rng() * ALPHABET.length)];
  return out;
}
