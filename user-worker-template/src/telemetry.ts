// One signed telemetry event per invocation, sent over the TELEMETRY service binding, or (on a
// runtime outside Cloudflare, e.g. AgentCore, which has no binding) POSTed to TELEMETRY_REPORT_URL,
// the gateway's public telemetry route, with the same signature in X-Telemetry-Signature. The body
// is signed as the exact bytes sent: `v1=<lowercase hex HMAC-SHA256>` under the raw 32-byte key
// whose base64url is TELEMETRY_SECRET. Telemetry is best effort: nothing here may throw.
import type { InvokeUsage } from "./invoke";

export type TelemetryBinding = {
  report(input: { body: string; signature: string; deploymentId: string }): Promise<unknown>;
};

export type TelemetryEnv = {
  TELEMETRY?: TelemetryBinding;
  TELEMETRY_SECRET?: string;
  USER_ID?: string;
  AGENT_ID?: string;
  DEPLOYMENT_ID?: string;
  RUNTIME_PROVIDER?: string;
  /** The public telemetry route (set on runtimes without the TELEMETRY binding). */
  TELEMETRY_REPORT_URL?: string;
};

export type InvocationSummary = {
  traceId?: string;
  startedAt: number;
  durationMs: number;
  status: "ok" | "error";
  usage?: InvokeUsage;
  errorCode?: string;
};

function base64UrlToBytes(text: string): Uint8Array {
  const normal = text.replaceAll("-", "+").replaceAll("_", "/");
  const bin = atob(normal.padEnd(Math.ceil(normal.length / 4) * 4, "="));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function toHex(bytes: ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function signBody(secretBase64Url: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    base64UrlToBytes(secretBase64Url),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return `v1=${toHex(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)))}`;
}

/** Reports one invoke event; resolves whatever happens (errors are logged, never thrown). */
export async function reportInvocation(env: TelemetryEnv, summary: InvocationSummary): Promise<void> {
  try {
    if ((!env.TELEMETRY && !env.TELEMETRY_REPORT_URL) || !env.TELEMETRY_SECRET || !env.DEPLOYMENT_ID) return;
    const event = {
      eventId: crypto.randomUUID(),
      ...(summary.traceId ? { traceId: summary.traceId } : {}),
      userId: env.USER_ID,
      agentId: env.AGENT_ID,
      deploymentId: env.DEPLOYMENT_ID,
      runtimeProvider: env.RUNTIME_PROVIDER ?? "cloudflare",
      kind: "invoke",
      ts: summary.startedAt,
      durationMs: summary.durationMs,
      status: summary.status,
      ...(summary.usage ? { usage: summary.usage } : {}),
      ...(summary.errorCode ? { errorCode: summary.errorCode } : {}),
    };
    const body = JSON.stringify(event);
    const signature = await signBody(env.TELEMETRY_SECRET, body);
    if (env.TELEMETRY) {
      await env.TELEMETRY.report({ body, signature, deploymentId: env.DEPLOYMENT_ID });
      return;
    }
    const res = await fetch(env.TELEMETRY_REPORT_URL as string, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-telemetry-signature": signature,
        "x-telemetry-deployment-id": env.DEPLOYMENT_ID,
      },
      body,
    });
    if (!res.ok) console.warn(`telemetry report answered HTTP ${res.status}`);
    await res.body?.cancel();
  } catch (err) {
    console.warn(`telemetry report failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
