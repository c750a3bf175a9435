// The AgentCore provider's configuration (docs/runtimes.md): where runtimes are created (region,
// IAM role, artifact bucket), the credentials every request is signed with, the endpoints (AWS's
// by default; overridable for other partitions and for the local fake AWS), and the gateway's
// public URL, from which the agent's TELEMETRY_REPORT_URL is made. Parsed only when a deployment
// asks for runtimeProvider "agentcore"; without it the provider is simply not offered.
import { z } from "zod";
import { invalidConfiguration } from "../../lib/config-error";
import { blankToUndefined } from "../../lib/env-vars";

export type AgentCoreConfigVars = {
  AGENTCORE_REGION?: string;
  AGENTCORE_ROLE_ARN?: string;
  AGENTCORE_ARTIFACT_BUCKET?: string;
  AWS_ACCESS_KEY_ID?: string;
  AWS_SECRET_ACCESS_KEY?: string;
  AGENTCORE_CONTROL_ENDPOINT?: string;
  AGENTCORE_DATA_ENDPOINT?: string;
  AGENTCORE_S3_ENDPOINT?: string;
  /** The gateway's public origin (e.g. https://api.example.com): agents report telemetry to it. */
  GATEWAY_PUBLIC_URL?: string;
};

export type AgentCoreConfig = {
  region: string;
  roleArn: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  controlEndpoint: string;
  dataEndpoint: string;
  s3Endpoint: string;
  telemetryReportUrl: string;
};

/** What must be set before runtimeProvider "agentcore" is accepted. */
export const AGENTCORE_REQUIRED_VARS = [
  "AGENTCORE_REGION",
  "AGENTCORE_ROLE_ARN",
  "AGENTCORE_ARTIFACT_BUCKET",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "GATEWAY_PUBLIC_URL",
] as const;

/** The public HTTP telemetry route (src/routes/v1/telemetry/report.ts). */
export const TELEMETRY_REPORT_PATH = "/v1/telemetry/report";

/** The names of required variables that are unset or blank (empty when the provider is configured). */
export function missingAgentCoreVars(env: AgentCoreConfigVars): string[] {
  return AGENTCORE_REQUIRED_VARS.filter((name) => blankToUndefined(env[name]) === undefined);
}

const endpoint = z.preprocess(blankToUndefined, z.url().optional());
const required = (name: string) =>
  z.preprocess(blankToUndefined, z.string({ error: `${name} is required for runtimeProvider agentcore` }).min(1));

const schema = z.object({
  AGENTCORE_REGION: z.preprocess(
    blankToUndefined,
    z.string({ error: "AGENTCORE_REGION is required" }).regex(/^[a-z]{2}(-[a-z]+)+-\d$/, "must be an AWS region"),
  ),
  AGENTCORE_ROLE_ARN: z.preprocess(
    blankToUndefined,
    z
      .string({ error: "AGENTCORE_ROLE_ARN is required" })
      .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, "must be an IAM role ARN"),
  ),
  AGENTCORE_ARTIFACT_BUCKET: z.preprocess(
    blankToUndefined,
    z
      .string({ error: "AGENTCORE_ARTIFACT_BUCKET is required" })
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name"),
  ),
  AWS_ACCESS_KEY_ID: required("AWS_ACCESS_KEY_ID"),
  AWS_SECRET_ACCESS_KEY: required("AWS_SECRET_ACCESS_KEY"),
  AGENTCORE_CONTROL_ENDPOINT: endpoint,
  AGENTCORE_DATA_ENDPOINT: endpoint,
  AGENTCORE_S3_ENDPOINT: endpoint,
  GATEWAY_PUBLIC_URL: z.preprocess(
    blankToUndefined,
    z.url({ error: "GATEWAY_PUBLIC_URL must be the gateway's public URL" }),
  ),
});

const trimSlash = (url: string) => url.replace(/\/+$/, "");

export function parseAgentCoreConfig(env: AgentCoreConfigVars): AgentCoreConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) throw invalidConfiguration(parsed.error.issues);
  const d = parsed.data;
  const region = d.AGENTCORE_REGION;
  return {
    region,
    roleArn: d.AGENTCORE_ROLE_ARN,
    bucket: d.AGENTCORE_ARTIFACT_BUCKET,
    accessKeyId: d.AWS_ACCESS_KEY_ID,
    secretAccessKey: d.AWS_SECRET_ACCESS_KEY,
    controlEndpoint: trimSlash(
      d.AGENTCORE_CONTROL_ENDPOINT ?? `https://bedrock-agentcore-control.${region}.amazonaws.com`,
    ),
    dataEndpoint: trimSlash(d.AGENTCORE_DATA_ENDPOINT ?? `https://bedrock-agentcore.${region}.amazonaws.com`),
    s3Endpoint: trimSlash(d.AGENTCORE_S3_ENDPOINT ?? `https://s3.${region}.amazonaws.com`),
    telemetryReportUrl: `${trimSlash(d.GATEWAY_PUBLIC_URL)}${TELEMETRY_REPORT_PATH}`,
  };
}
