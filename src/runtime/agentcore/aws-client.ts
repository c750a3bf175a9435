// The only code that talks to AWS: S3 (the code artifact), bedrock-agentcore-control (runtimes)
// and bedrock-agentcore (InvokeAgentRuntime), every request signed with SigV4 by aws4fetch. AWS's
// answers become an AwsApiError carrying the error type (x-amzn-ErrorType, or S3's XML <Code>),
// the status and whether trying again can help; the credentials never appear in a message.
import { AwsClient } from "aws4fetch";
import type { AgentCoreConfig } from "./config";

export type FetchLike = (request: Request) => Promise<Response>;

/** The error types AWS documents as transient for these APIs. */
const RETRYABLE_TYPES = new Set([
  "ThrottlingException",
  "ServiceQuotaExceededException",
  "InternalServerException",
  "ServiceUnavailableException",
  "SlowDown",
  "InternalError",
  "RequestTimeout",
]);
/** Credentials or permissions: no retry can help until an operator fixes the configuration. */
const AUTH_TYPES = new Set([
  "SignatureDoesNotMatch",
  "UnrecognizedClientException",
  "InvalidAccessKeyId",
  "InvalidSignatureException",
  "MissingAuthenticationTokenException",
  "AccessDeniedException",
  "AccessDenied",
  "ExpiredTokenException",
]);

export class AwsApiError extends Error {
  override name = "AwsApiError";
  readonly retryable: boolean;
  readonly auth: boolean;
  constructor(
    readonly operation: string,
    readonly status: number | null,
    readonly type: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `AWS ${operation} failed: ${status === null ? "no answer" : `HTTP ${status}`} ${type}: ${detail}`.slice(0, 600),
      options,
    );
    this.auth = AUTH_TYPES.has(type);
    this.retryable = status === null || RETRYABLE_TYPES.has(type) || (status >= 500 && !this.auth);
  }
}

export type RuntimeSummary = {
  agentRuntimeArn: string;
  agentRuntimeId: string;
  agentRuntimeName: string;
  agentRuntimeVersion?: string;
  status: string;
  description?: string;
};
export type RuntimeDetail = RuntimeSummary & { failureReason?: string };

export type CreateRuntimeInput = {
  agentRuntimeName: string;
  description: string;
  clientToken: string;
  s3Key: string;
  entryPoint: string[];
  environmentVariables: Record<string, string>;
  requestHeaderAllowlist: string[];
};

const SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id";

export class AgentCoreAws {
  private readonly aws: AwsClient;
  private readonly s3: AwsClient;
  constructor(
    private readonly config: AgentCoreConfig,
    private readonly fetchImpl: FetchLike = (r) => fetch(r),
  ) {
    const creds = { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey, region: config.region };
    // Both AgentCore planes sign as service "bedrock-agentcore".
    this.aws = new AwsClient({ ...creds, service: "bedrock-agentcore", retries: 0 });
    this.s3 = new AwsClient({ ...creds, service: "s3", retries: 0 });
  }

  private async send(operation: string, client: AwsClient, url: string, init: RequestInit): Promise<Response> {
    let signed: Request;
    try {
      signed = await client.sign(url, init);
    } catch (err) {
      throw new AwsApiError(operation, null, "SigningFailed", err instanceof Error ? err.message : String(err));
    }
    let res: Response;
    try {
      res = await this.fetchImpl(signed);
    } catch (err) {
      if (err instanceof Error && err.name === "AbortError") throw err;
      throw new AwsApiError(operation, null, "NetworkError", err instanceof Error ? err.message : String(err), {
        cause: err,
      });
    }
    if (res.ok) return res;
    throw await errorOf(operation, res);
  }

  private async json<T>(operation: string, method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(operation, this.aws, `${this.config.controlEndpoint}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await res.json()) as T;
  }

  async putObject(key: string, bytes: Uint8Array): Promise<void> {
    const res = await this.send("S3 PutObject", this.s3, this.objectUrl(key), {
      method: "PUT",
      headers: { "content-type": "application/zip" },
      body: bytes,
    });
    await res.body?.cancel();
  }

  /** Deletes one object; an absent one is not an error (S3 answers 204 either way). */
  async deleteObject(key: string): Promise<void> {
    const res = await this.send("S3 DeleteObject", this.s3, this.objectUrl(key), { method: "DELETE" });
    await res.body?.cancel();
  }

  private objectUrl(key: string): string {
    const path = key.split("/").map(encodeURIComponent).join("/");
    return `${this.config.s3Endpoint}/${encodeURIComponent(this.config.bucket)}/${path}`;
  }

  /** CreateAgentRuntime (PUT /runtimes/): idempotent per clientToken. */
  createRuntime(
    input: CreateRuntimeInput,
  ): Promise<{ agentRuntimeArn: string; agentRuntimeId: string; status: string }> {
    return this.json("CreateAgentRuntime", "PUT", "/runtimes/", {
      agentRuntimeName: input.agentRuntimeName,
      description: input.description,
      clientToken: input.clientToken,
      roleArn: this.config.roleArn,
      networkConfiguration: { networkMode: "PUBLIC" },
      agentRuntimeArtifact: {
        codeConfiguration: {
          code: { s3: { bucket: this.config.bucket, prefix: input.s3Key } },
          runtime: "NODE_22",
          entryPoint: input.entryPoint,
        },
      },
      environmentVariables: input.environmentVariables,
      requestHeaderConfiguration: { requestHeaderAllowlist: input.requestHeaderAllowlist },
    });
  }

  getRuntime(agentRuntimeId: string): Promise<RuntimeDetail> {
    return this.json("GetAgentRuntime", "GET", `/runtimes/${encodeURIComponent(agentRuntimeId)}/`);
  }

  async deleteRuntime(agentRuntimeId: string): Promise<void> {
    try {
      await this.json("DeleteAgentRuntime", "DELETE", `/runtimes/${encodeURIComponent(agentRuntimeId)}/`);
    } catch (err) {
      if (err instanceof AwsApiError && err.type === "ResourceNotFoundException") return;
      throw err;
    }
  }

  /** ListAgentRuntimes (POST /runtimes/), every page. */
  async listRuntimes(): Promise<RuntimeSummary[]> {
    const all: RuntimeSummary[] = [];
    let nextToken: string | undefined;
    for (let page = 0; page < 100; page++) {
      const res = await this.json<{ agentRuntimes?: RuntimeSummary[]; nextToken?: string }>(
        "ListAgentRuntimes",
        "POST",
        "/runtimes/",
        { maxResults: 100, ...(nextToken ? { nextToken } : {}) },
      );
      all.push(...(res.agentRuntimes ?? []));
      nextToken = res.nextToken;
      if (!nextToken) break;
    }
    return all;
  }

  /**
   * InvokeAgentRuntime: the agent's answer as it streams. A non-2xx answer without an AWS error
   * type is the agent's own status (InvokeAgentRuntime's statusCode) and is returned as is.
   */
  async invoke(
    arn: string,
    payload: Uint8Array,
    headers: { contentType: string; accept: string; sessionId: string; custom: Record<string, string> },
    signal: AbortSignal,
  ): Promise<Response> {
    const url = `${this.config.dataEndpoint}/runtimes/${encodeURIComponent(arn)}/invocations?qualifier=DEFAULT`;
    const signed = await this.aws.sign(url, {
      method: "POST",
      headers: {
        "content-type": headers.contentType,
        accept: headers.accept,
        [SESSION_HEADER]: headers.sessionId,
        ...headers.custom,
      },
      body: payload,
    });
    let res: Response;
    try {
      res = await this.fetchImpl(new Request(signed, { signal }));
    } catch (err) {
      if (err instanceof Error && err.name === "AbortError") throw err;
      throw new AwsApiError(
        "InvokeAgentRuntime",
        null,
        "NetworkError",
        err instanceof Error ? err.message : String(err),
      );
    }
    if (!res.ok && res.headers.has("x-amzn-errortype")) throw await errorOf("InvokeAgentRuntime", res);
    return res;
  }
}

/** AWS's error: restJson1 (x-amzn-ErrorType + { message }) or S3's XML <Error><Code>. */
async function errorOf(operation: string, res: Response): Promise<AwsApiError> {
  const text = (await res.text().catch(() => "")).slice(0, 2000);
  let type = (res.headers.get("x-amzn-errortype") ?? "").split(":")[0] ?? "";
  let message = "";
  if (!type) type = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? `HTTP${res.status}`;
  const xmlMessage = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
  if (xmlMessage !== undefined) message = xmlMessage;
  else {
    try {
      const body = JSON.parse(text) as { message?: string; Message?: string };
      message = body.message ?? body.Message ?? "";
    } catch {
      message = text.slice(0, 200);
    }
  }
  return new AwsApiError(operation, res.status, type, message || "no detail");
}
