// A fake of the slice of AWS the AgentCore runtime provider (src/runtime/agentcore/) uses, for the
// e2e suite and scripts/fake-aws.mjs. Three HTTP servers on 127.0.0.1, one per endpoint:
//   s3         PUT/HEAD/DELETE /{bucket}/{key}   (path-style), GET /{bucket}?list-type=2&prefix=
//   control    bedrock-agentcore-control: PUT /runtimes/ (create), POST /runtimes/ (list),
//              GET|PUT|DELETE /runtimes/{agentRuntimeId}/
//   data       bedrock-agentcore: POST /runtimes/{url-encoded ARN}/invocations?qualifier=
// Every request must carry a SigV4 signature that the fake recomputes from what it received with
// the configured credentials (aws4fetch's AwsV4Signer, the signer the gateway uses): an unknown
// key id is 403 UnrecognizedClientException (S3: InvalidAccessKeyId), a wrong secret 403
// SignatureDoesNotMatch, in each service's error shape (restJson1: x-amzn-ErrorType + {message};
// S3: XML <Error>). Runtimes move CREATING → READY after `readyAfterPolls` GETs; the zip named by
// codeConfiguration must exist in S3 and hold the entry point, else the runtime ends CREATE_FAILED
// with a failureReason. An invocation starts the runtime's packaged code in a Node child process
// (its own free port, PORT in its env), waits for GET /ping, and proxies POST /invocations to it,
// streaming the answer through. Node only (it spawns processes).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AwsV4Signer } from "aws4fetch";
import { unzipSync } from "fflate";
import { freePort } from "./dev-server.ts";

export type FakeAwsOptions = {
  accessKeyId: string;
  secretAccessKey: string;
  region?: string;
  accountId?: string;
  /** GetAgentRuntime calls that still see CREATING/UPDATING before READY (default 1). */
  readyAfterPolls?: number;
  log?: (line: string) => void;
};

export type FakeRuntime = {
  agentRuntimeId: string;
  agentRuntimeArn: string;
  agentRuntimeName: string;
  agentRuntimeVersion: string;
  status: "CREATING" | "CREATE_FAILED" | "UPDATING" | "UPDATE_FAILED" | "READY" | "DELETING";
  failureReason?: string;
  clientToken?: string;
  description: string;
  /** Custom request headers (X-Amzn-Bedrock-AgentCore-Runtime-Custom-*) passed to the agent. */
  headerAllowlist: string[];
  roleArn: string;
  environmentVariables: Record<string, string>;
  code: { bucket: string; prefix: string; entryPoint: string[] };
  pollsLeft: number;
  createdAt: string;
  lastUpdatedAt: string;
};

export type FakeAwsRequest = {
  /** InvokeAgentRuntime's runtime session id, as received. */
  sessionId?: string;
  plane: "s3" | "control" | "data";
  method: string;
  path: string;
  status: number;
  error?: string;
};

export type FakeAws = {
  s3Endpoint: string;
  controlEndpoint: string;
  dataEndpoint: string;
  region: string;
  runtimes: Map<string, FakeRuntime>;
  /** S3 objects by "bucket/key". */
  objects: Map<string, Uint8Array<ArrayBuffer>>;
  requests: FakeAwsRequest[];
  /** What GET /ping of the runtime's running agent processes answers (their `status`es). */
  pingAgents(agentRuntimeId: string): Promise<string[]>;
  /** The next runtime created ends CREATE_FAILED with this failureReason (as AWS reports e.g. a role it cannot assume). */
  failNextCreate(reason: string): void;
  /** From now on, only this secret access key verifies (the gateway's becomes a wrong secret). */
  setSecretAccessKey(secret: string): void;
  /** Makes the next `times` matching requests answer with an AWS error. */
  inject(fault: {
    plane: FakeAwsRequest["plane"];
    status: number;
    type: string;
    message: string;
    times?: number;
  }): void;
  stop(): Promise<void>;
};

const RUNTIME_NAME = /^[a-zA-Z][a-zA-Z0-9_]{0,47}$/;
const CLIENT_TOKEN = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,256}$/;
const SESSION_HEADER = "x-amzn-bedrock-agentcore-runtime-session-id";

type Plane = FakeAwsRequest["plane"];
type Agent = { child: ChildProcess; port: number; dir: string; ready: Promise<void> };

class AwsFail extends Error {
  readonly status: number;
  readonly type: string;
  constructor(status: number, type: string, message: string) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

function restJsonError(err: AwsFail): Response {
  return new Response(JSON.stringify({ message: err.message }), {
    status: err.status,
    headers: { "content-type": "application/json", "x-amzn-errortype": err.type },
  });
}

function s3Error(err: AwsFail): Response {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${err.type}</Code><Message>${err.message}</Message></Error>`;
  return new Response(xml, { status: err.status, headers: { "content-type": "application/xml" } });
}

/** Recomputes the request's SigV4 signature with the configured credentials; throws AwsFail if it differs. */
async function verifySignature(
  request: Request,
  body: Uint8Array<ArrayBuffer>,
  plane: Plane,
  opts: { accessKeyId: string; secretAccessKey: string; region: string },
): Promise<void> {
  const service = plane === "s3" ? "s3" : "bedrock-agentcore";
  const auth = request.headers.get("authorization") ?? "";
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  const missing = plane === "s3" ? "AccessDenied" : "MissingAuthenticationTokenException";
  if (!m) throw new AwsFail(403, missing, "Missing or malformed Authorization header (AWS4-HMAC-SHA256 expected)");
  const [, keyId, date, region, signedService, signedHeaders, signature] = m as unknown as string[];
  if (keyId !== opts.accessKeyId) {
    throw new AwsFail(
      403,
      plane === "s3" ? "InvalidAccessKeyId" : "UnrecognizedClientException",
      "The security token included in the request is invalid.",
    );
  }
  const datetime = request.headers.get("x-amz-date") ?? "";
  if (!datetime.startsWith(date ?? "-") || region !== opts.region || signedService !== service) {
    throw new AwsFail(
      403,
      "SignatureDoesNotMatch",
      `Credential should be scoped to a valid region and service (${opts.region}/${service})`,
    );
  }
  const headers = new Headers();
  for (const name of (signedHeaders ?? "").split(";")) {
    if (name === "host") continue;
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  const signer = new AwsV4Signer({
    method: request.method,
    url: request.url,
    headers,
    body: body.byteLength ? body : undefined,
    accessKeyId: opts.accessKeyId,
    secretAccessKey: opts.secretAccessKey,
    service,
    region: opts.region,
    datetime,
  });
  if (signer.signedHeaders !== signedHeaders || (await signer.signature()) !== signature) {
    throw new AwsFail(
      403,
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
    );
  }
}

async function readBody(req: IncomingMessage): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  await new Promise<void>((resolve) => {
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve());
  });
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`the agent process exited with code ${child.exitCode}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/ping`);
      const body = (await res.json()) as { status?: string };
      if (res.ok && (body.status === "Healthy" || body.status === "HealthyBusy")) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the agent process did not answer GET /ping within 10 s");
}

export async function startFakeAws(options: FakeAwsOptions): Promise<FakeAws> {
  const region = options.region ?? "us-east-1";
  const accountId = options.accountId ?? "123456789012";
  const readyAfterPolls = options.readyAfterPolls ?? 1;
  let secretAccessKey = options.secretAccessKey;
  let nextCreateFailure: string | null = null;
  const runtimes = new Map<string, FakeRuntime>();
  const objects = new Map<string, Uint8Array<ArrayBuffer>>();
  const requests: FakeAwsRequest[] = [];
  const faults: Array<{ plane: Plane; status: number; type: string; message: string; times: number }> = [];
  const agents = new Map<string, Agent>();
  const scratch = mkdtempSync(join(tmpdir(), "fake-aws-"));
  let counter = 0;
  const log = options.log ?? (() => {});

  function checkCode(rt: FakeRuntime): string | null {
    const zip = objects.get(`${rt.code.bucket}/${rt.code.prefix}`);
    if (!zip) return `S3 object s3://${rt.code.bucket}/${rt.code.prefix} does not exist`;
    let files: Record<string, Uint8Array>;
    try {
      files = unzipSync(zip);
    } catch {
      return "the code artifact is not a valid zip file";
    }
    const entry = rt.code.entryPoint[0] ?? "";
    if (!files[entry]) return `entry point ${entry} not found in the code artifact`;
    return null;
  }

  function stopAgent(id: string): void {
    const agent = agents.get(id);
    if (!agent) return;
    agents.delete(id);
    agent.child.kill("SIGKILL");
    rmSync(agent.dir, { recursive: true, force: true });
  }

  /** The runtime's code running in a child process (started on first use, like a new session's microVM). */
  function agentFor(rt: FakeRuntime): Promise<Agent> {
    const key = `${rt.agentRuntimeId}@${rt.agentRuntimeVersion}`;
    const running = agents.get(key);
    if (running) return running.ready.then(() => running);
    const files = unzipSync(objects.get(`${rt.code.bucket}/${rt.code.prefix}`) as Uint8Array);
    const dir = join(scratch, `${rt.agentRuntimeId}-v${rt.agentRuntimeVersion}`);
    for (const [name, bytes] of Object.entries(files)) {
      if (name.endsWith("/")) continue;
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), bytes);
    }
    const agent = { dir } as Agent;
    agent.ready = (async () => {
      agent.port = await freePort();
      // Only the runtime's own environment variables (plus PATH and PORT), as in a microVM.
      agent.child = spawn(process.execPath, rt.code.entryPoint, {
        cwd: dir,
        // Loopback only on this machine (AgentCore itself expects 0.0.0.0:8080).
        env: {
          ...rt.environmentVariables,
          PATH: process.env.PATH,
          PORT: String(agent.port),
          WEBHOST_LISTEN_HOST: "127.0.0.1",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const echo = (c: Uint8Array) => log(`[agent ${rt.agentRuntimeName}] ${new TextDecoder().decode(c).trimEnd()}`);
      agent.child.stdout?.on("data", echo);
      agent.child.stderr?.on("data", echo);
      await waitForPing(agent.port, agent.child);
    })();
    agents.set(key, agent);
    agent.ready.catch(() => stopAgent(key));
    return agent.ready.then(() => agent);
  }

  function view(rt: FakeRuntime) {
    return {
      agentRuntimeArn: rt.agentRuntimeArn,
      agentRuntimeId: rt.agentRuntimeId,
      agentRuntimeName: rt.agentRuntimeName,
      agentRuntimeVersion: rt.agentRuntimeVersion,
      status: rt.status,
      ...(rt.failureReason ? { failureReason: rt.failureReason } : {}),
      roleArn: rt.roleArn,
      createdAt: rt.createdAt,
      lastUpdatedAt: rt.lastUpdatedAt,
      agentRuntimeArtifact: {
        codeConfiguration: {
          code: { s3: { bucket: rt.code.bucket, prefix: rt.code.prefix } },
          runtime: "NODE_22",
          entryPoint: rt.code.entryPoint,
        },
      },
      // Values are returned by the real API too; the fake keeps them only in memory.
      environmentVariables: rt.environmentVariables,
    };
  }

  function parseRuntimeInput(body: unknown, forUpdate: boolean) {
    if (typeof body !== "object" || body === null)
      throw new AwsFail(400, "ValidationException", "body must be a JSON object");
    const b = body as Record<string, any>;
    if (!forUpdate && (typeof b.agentRuntimeName !== "string" || !RUNTIME_NAME.test(b.agentRuntimeName))) {
      throw new AwsFail(
        400,
        "ValidationException",
        "1 validation error detected: Value at 'agentRuntimeName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][a-zA-Z0-9_]{0,47}",
      );
    }
    if (typeof b.roleArn !== "string" || !/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/.test(b.roleArn)) {
      throw new AwsFail(
        400,
        "ValidationException",
        "Value at 'roleArn' failed to satisfy constraint: must be an IAM role ARN",
      );
    }
    const networkMode = b.networkConfiguration?.networkMode;
    if (networkMode !== "PUBLIC" && networkMode !== "VPC") {
      throw new AwsFail(
        400,
        "ValidationException",
        "Value at 'networkConfiguration.networkMode' must be PUBLIC or VPC",
      );
    }
    if (
      b.clientToken !== undefined &&
      (typeof b.clientToken !== "string" || b.clientToken.length < 33 || !CLIENT_TOKEN.test(b.clientToken))
    ) {
      throw new AwsFail(
        400,
        "ValidationException",
        "Value at 'clientToken' failed to satisfy constraint: 33-256 characters of [a-zA-Z0-9-]",
      );
    }
    const code = b.agentRuntimeArtifact?.codeConfiguration;
    const s3 = code?.code?.s3;
    if (typeof s3?.bucket !== "string" || typeof s3?.prefix !== "string") {
      throw new AwsFail(
        400,
        "ValidationException",
        "agentRuntimeArtifact.codeConfiguration.code.s3 needs bucket and prefix",
      );
    }
    if (code.runtime !== "NODE_22") {
      throw new AwsFail(
        400,
        "ValidationException",
        `codeConfiguration.runtime ${String(code.runtime)} is not one the fake runs (NODE_22)`,
      );
    }
    if (
      !Array.isArray(code.entryPoint) ||
      code.entryPoint.length < 1 ||
      code.entryPoint.some((e: unknown) => typeof e !== "string")
    ) {
      throw new AwsFail(400, "ValidationException", "codeConfiguration.entryPoint must be a non-empty list of strings");
    }
    const env = b.environmentVariables ?? {};
    if (typeof env !== "object" || Object.values(env).some((v) => typeof v !== "string" || v.length > 5000)) {
      throw new AwsFail(
        400,
        "ValidationException",
        "environmentVariables values must be strings of at most 5000 characters",
      );
    }
    if (Object.keys(env).length > 50) throw new AwsFail(400, "ValidationException", "at most 50 environmentVariables");
    const allow = b.requestHeaderConfiguration?.requestHeaderAllowlist ?? [];
    if (
      !Array.isArray(allow) ||
      allow.some(
        (h: unknown) =>
          typeof h !== "string" || !/^(Authorization|X-Amzn-Bedrock-AgentCore-Runtime-Custom-[A-Za-z0-9-]+)$/i.test(h),
      )
    ) {
      throw new AwsFail(
        400,
        "ValidationException",
        "requestHeaderAllowlist entries must be Authorization or X-Amzn-Bedrock-AgentCore-Runtime-Custom-*",
      );
    }
    return {
      description: typeof b.description === "string" ? b.description : "",
      headerAllowlist: (allow as string[]).map((h) => h.toLowerCase()),
      name: b.agentRuntimeName as string,
      roleArn: b.roleArn as string,
      clientToken: b.clientToken as string | undefined,
      env: env as Record<string, string>,
      code: { bucket: s3.bucket as string, prefix: s3.prefix as string, entryPoint: code.entryPoint as string[] },
    };
  }

  function settle(rt: FakeRuntime, failed: "CREATE_FAILED" | "UPDATE_FAILED"): void {
    const problem = checkCode(rt);
    if (problem) {
      rt.status = failed;
      rt.failureReason = problem;
    }
  }

  async function control(request: Request, body: Uint8Array<ArrayBuffer>): Promise<Response> {
    const url = new URL(request.url);
    const json = () => {
      try {
        return JSON.parse(new TextDecoder().decode(body));
      } catch {
        throw new AwsFail(400, "ValidationException", "body is not JSON");
      }
    };
    const ok = (data: unknown, status = 200) =>
      new Response(JSON.stringify(data), { status, headers: { "content-type": "application/json" } });
    if (url.pathname === "/runtimes/" && request.method === "PUT") {
      const input = parseRuntimeInput(json(), false);
      const same = [...runtimes.values()].find((r) => r.clientToken && r.clientToken === input.clientToken);
      if (same) {
        if (same.agentRuntimeName !== input.name) {
          throw new AwsFail(409, "ConflictException", "clientToken was used with different parameters");
        }
        return ok(view(same), 202); // idempotent retry: the same runtime
      }
      if ([...runtimes.values()].some((r) => r.agentRuntimeName === input.name)) {
        throw new AwsFail(409, "ConflictException", `An agent runtime named ${input.name} already exists`);
      }
      counter += 1;
      const id = `${input.name}-${String(counter).padStart(4, "0")}fake`;
      const now = new Date().toISOString();
      const rt: FakeRuntime = {
        agentRuntimeId: id,
        agentRuntimeArn: `arn:aws:bedrock-agentcore:${region}:${accountId}:runtime/${id}`,
        agentRuntimeName: input.name,
        agentRuntimeVersion: "1",
        status: "CREATING",
        clientToken: input.clientToken,
        description: input.description,
        headerAllowlist: input.headerAllowlist,
        roleArn: input.roleArn,
        environmentVariables: input.env,
        code: input.code,
        pollsLeft: readyAfterPolls,
        createdAt: now,
        lastUpdatedAt: now,
      };
      settle(rt, "CREATE_FAILED");
      if (nextCreateFailure !== null) {
        rt.status = "CREATE_FAILED";
        rt.failureReason = nextCreateFailure;
        nextCreateFailure = null;
      }
      runtimes.set(id, rt);
      const { agentRuntimeArn, agentRuntimeId, agentRuntimeVersion, status, createdAt } = view(rt);
      return ok({ agentRuntimeArn, agentRuntimeId, agentRuntimeVersion, status, createdAt }, 202);
    }
    if (url.pathname === "/runtimes/" && request.method === "POST") {
      const b = body.byteLength ? json() : {};
      const max = Math.min(Number(b.maxResults ?? 100), 100);
      const all = [...runtimes.values()];
      const start = b.nextToken ? Number(b.nextToken) : 0;
      const page = all.slice(start, start + max);
      return ok({
        agentRuntimes: page.map((r) => {
          const { agentRuntimeArn, agentRuntimeId, agentRuntimeName, agentRuntimeVersion, status, lastUpdatedAt } =
            view(r);
          return {
            agentRuntimeArn,
            agentRuntimeId,
            agentRuntimeName,
            agentRuntimeVersion,
            status,
            lastUpdatedAt,
            description: r.description,
          };
        }),
        ...(start + max < all.length ? { nextToken: String(start + max) } : {}),
      });
    }
    const m = /^\/runtimes\/([^/]+)\/$/.exec(url.pathname);
    if (!m) throw new AwsFail(404, "UnknownOperationException", `no operation for ${request.method} ${url.pathname}`);
    const id = decodeURIComponent(m[1] as string);
    const rt = runtimes.get(id);
    if (!rt) throw new AwsFail(404, "ResourceNotFoundException", `AgentRuntime ${id} not found`);
    if (request.method === "GET") {
      if ((rt.status === "CREATING" || rt.status === "UPDATING") && --rt.pollsLeft < 0) rt.status = "READY";
      return ok(view(rt));
    }
    if (request.method === "PUT") {
      const input = parseRuntimeInput(json(), true);
      if (rt.status === "CREATING" || rt.status === "UPDATING" || rt.status === "DELETING") {
        throw new AwsFail(409, "ConflictException", `AgentRuntime ${id} is ${rt.status}`);
      }
      rt.agentRuntimeVersion = String(Number(rt.agentRuntimeVersion) + 1);
      rt.status = "UPDATING";
      rt.failureReason = undefined;
      rt.roleArn = input.roleArn;
      rt.description = input.description;
      rt.headerAllowlist = input.headerAllowlist;
      rt.environmentVariables = input.env;
      rt.code = input.code;
      rt.pollsLeft = readyAfterPolls;
      rt.lastUpdatedAt = new Date().toISOString();
      settle(rt, "UPDATE_FAILED");
      const { agentRuntimeArn, agentRuntimeId, agentRuntimeVersion, status } = view(rt);
      return ok({ agentRuntimeArn, agentRuntimeId, agentRuntimeVersion, status, lastUpdatedAt: rt.lastUpdatedAt }, 202);
    }
    if (request.method === "DELETE") {
      runtimes.delete(id);
      for (const key of [...agents.keys()]) if (key.startsWith(`${id}@`)) stopAgent(key);
      return ok({ agentRuntimeId: id, status: "DELETING" }, 202);
    }
    throw new AwsFail(405, "UnknownOperationException", `method ${request.method} not allowed on ${url.pathname}`);
  }

  async function data(request: Request, body: Uint8Array<ArrayBuffer>): Promise<Response> {
    const url = new URL(request.url);
    const m = /^\/runtimes\/([^/]+)\/invocations$/.exec(url.pathname);
    if (!m || request.method !== "POST") {
      throw new AwsFail(404, "UnknownOperationException", `no operation for ${request.method} ${url.pathname}`);
    }
    const arn = decodeURIComponent(m[1] as string);
    const rt = [...runtimes.values()].find((r) => r.agentRuntimeArn === arn);
    if (!rt) throw new AwsFail(404, "ResourceNotFoundException", `AgentRuntime ${arn} not found`);
    const qualifier = url.searchParams.get("qualifier");
    if (qualifier !== null && qualifier !== "DEFAULT") {
      throw new AwsFail(404, "ResourceNotFoundException", `endpoint ${qualifier} not found`);
    }
    if (rt.status !== "READY") throw new AwsFail(409, "ConflictException", `AgentRuntime is ${rt.status}`);
    const session = request.headers.get(SESSION_HEADER);
    if (session !== null && (session.length < 33 || session.length > 256)) {
      throw new AwsFail(400, "ValidationException", "runtimeSessionId must be 33-256 characters");
    }
    if (body.byteLength === 0) throw new AwsFail(400, "ValidationException", "payload is required");
    if (body.byteLength > 100 * 1024 * 1024) throw new AwsFail(400, "ValidationException", "payload exceeds 100 MB");
    let agent: Agent;
    try {
      agent = await agentFor(rt);
    } catch (err) {
      throw new AwsFail(424, "RuntimeClientError", `the runtime failed to start: ${(err as Error).message}`);
    }
    const sessionId = session ?? crypto.randomUUID() + crypto.randomUUID().slice(0, 8);
    const answer = await fetch(`http://127.0.0.1:${agent.port}/invocations`, {
      method: "POST",
      headers: {
        "content-type": request.headers.get("content-type") ?? "application/json",
        accept: request.headers.get("accept") ?? "*/*",
        [SESSION_HEADER]: sessionId,
        // Only the custom headers the runtime allowlisted reach the agent.
        ...Object.fromEntries(
          rt.headerAllowlist.flatMap((h) => {
            const v = request.headers.get(h);
            return v === null ? [] : [[h, v]];
          }),
        ),
      },
      body,
      signal: request.signal,
    });
    // The agent's status is InvokeAgentRuntime's statusCode (the HTTP status of the answer).
    return new Response(answer.body, {
      status: answer.status,
      headers: {
        "content-type": answer.headers.get("content-type") ?? "application/json",
        [SESSION_HEADER]: sessionId,
      },
    });
  }

  async function s3(request: Request, body: Uint8Array<ArrayBuffer>): Promise<Response> {
    const url = new URL(request.url);
    const [, bucket = "", ...rest] = url.pathname.split("/");
    const key = decodeURIComponent(rest.join("/"));
    if (!bucket) throw new AwsFail(400, "InvalidRequest", "path-style bucket expected");
    if (request.method === "PUT" && key) {
      if (request.headers.get("x-amz-content-sha256") === null) {
        throw new AwsFail(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
      }
      objects.set(`${bucket}/${key}`, body);
      return new Response(null, { status: 200, headers: { etag: `"${counter}-${body.byteLength}"` } });
    }
    if ((request.method === "GET" || request.method === "HEAD") && key) {
      const obj = objects.get(`${bucket}/${key}`);
      if (!obj) throw new AwsFail(404, "NoSuchKey", "The specified key does not exist.");
      return new Response(request.method === "HEAD" ? null : obj, { status: 200 });
    }
    if (request.method === "DELETE" && key) {
      objects.delete(`${bucket}/${key}`);
      return new Response(null, { status: 204 });
    }
    if (request.method === "GET" && !key && url.searchParams.get("list-type") === "2") {
      const prefix = url.searchParams.get("prefix") ?? "";
      const keys = [...objects.keys()]
        .filter((k) => k.startsWith(`${bucket}/${prefix}`))
        .map((k) => k.slice(bucket.length + 1));
      const xml = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${bucket}</Name><Prefix>${prefix}</Prefix><KeyCount>${keys.length}</KeyCount><IsTruncated>false</IsTruncated>${keys.map((k) => `<Contents><Key>${k}</Key></Contents>`).join("")}</ListBucketResult>`;
      return new Response(xml, { status: 200, headers: { "content-type": "application/xml" } });
    }
    throw new AwsFail(405, "MethodNotAllowed", `The specified method is not allowed against this resource.`);
  }

  async function handle(plane: Plane, request: Request, body: Uint8Array<ArrayBuffer>): Promise<Response> {
    const path = new URL(request.url).pathname;
    const entry: FakeAwsRequest = { plane, method: request.method, path, status: 0 };
    const session = request.headers.get(SESSION_HEADER);
    if (session !== null) entry.sessionId = session;
    try {
      await verifySignature(request, body, plane, { accessKeyId: options.accessKeyId, secretAccessKey, region });
      const fi = faults.findIndex((f) => f.plane === plane);
      if (fi >= 0) {
        const f = faults[fi] as (typeof faults)[number];
        if (--f.times <= 0) faults.splice(fi, 1);
        throw new AwsFail(f.status, f.type, f.message);
      }
      const res = await (plane === "s3" ? s3 : plane === "control" ? control : data)(request, body);
      entry.status = res.status;
      return res;
    } catch (err) {
      const fail = err instanceof AwsFail ? err : new AwsFail(500, "InternalServerException", String(err));
      entry.status = fail.status;
      entry.error = `${fail.type}: ${fail.message}`;
      return plane === "s3" ? s3Error(fail) : restJsonError(fail);
    } finally {
      requests.push(entry);
      log(`${plane} ${entry.method} ${path} -> ${entry.status}${entry.error ? `  ${entry.error}` : ""}`);
    }
  }

  async function serve(plane: Plane): Promise<{ server: Server; url: string }> {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      void (async () => {
        const body = await readBody(req);
        const controller = new AbortController();
        res.on("close", () => controller.abort());
        const host = req.headers.host ?? "127.0.0.1";
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
        const request = new Request(`http://${host}${req.url ?? "/"}`, {
          method: req.method,
          headers,
          body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
          signal: controller.signal,
        });
        let response: Response;
        try {
          response = await handle(plane, request, body);
        } catch (err) {
          response = restJsonError(new AwsFail(500, "InternalServerException", String(err)));
        }
        res.writeHead(response.status, Object.fromEntries(response.headers));
        res.flushHeaders?.();
        if (!response.body) {
          res.end();
          return;
        }
        const reader = response.body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            res.write(value);
          }
        } catch {
          // the agent or the client went away
        }
        res.end();
      })();
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    return { server, url: `http://127.0.0.1:${port}` };
  }

  const s3Server = await serve("s3");
  const controlServer = await serve("control");
  const dataServer = await serve("data");

  return {
    s3Endpoint: s3Server.url,
    controlEndpoint: controlServer.url,
    dataEndpoint: dataServer.url,
    region,
    runtimes,
    objects,
    requests,
    async pingAgents(agentRuntimeId) {
      const running = [...agents.entries()].filter(([key]) => key.startsWith(`${agentRuntimeId}@`));
      return Promise.all(
        running.map(async ([, agent]) => {
          const res = await fetch(`http://127.0.0.1:${agent.port}/ping`);
          return ((await res.json()) as { status: string }).status;
        }),
      );
    },
    failNextCreate(reason) {
      nextCreateFailure = reason;
    },
    setSecretAccessKey(secret) {
      secretAccessKey = secret;
    },
    inject(fault) {
      faults.push({ ...fault, times: fault.times ?? 1 });
    },
    async stop() {
      for (const key of [...agents.keys()]) stopAgent(key);
      await Promise.all(
        [s3Server, controlServer, dataServer].map(
          (s) => new Promise<void>((resolve) => s.server.close(() => resolve())),
        ),
      );
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
