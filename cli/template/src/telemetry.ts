// One signed telemetry event per invocation through the TELEMETRY binding the platform gives
// every deployment. Optional and best effort: without the binding nothing is sent, and a failure
// is logged, never thrown. The body is signed as sent: `v1=<hex HMAC-SHA256>` under the key whose
// base64url is TELEMETRY_SECRET.
import type { InvokeUsage } from "./invoke";

export type TelemetryEnv = {
  TELEMETRY?: { report(input: { body: string; signature: string; deploymentId: string }): Promise<unknown> };
  TELEMETRY_SECRET?: string;
  USER_ID?: string;
  AGENT_ID?: string;
  DEPLOYMENT_ID?: string;
};

type Summary = { traceId?: string; startedAt: number; durationMs: number; usage?: InvokeUsage };

async function sign(secretBase64Url: string, body: string): Promise<string> {
  const raw = Uint8Array.from(atob(secretBase64Url.replaceAll("-", "+").replaceAll("_", "/")), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return `v1=${[...mac].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export async function reportInvocation(env: TelemetryEnv, s: Summary): Promise<void> {
  try {
    if (!env.TELEMETRY || !env.TELEMETRY_SECRET || !env.DEPLOYMENT_ID) return;
    const body = JSON.stringify({
      eventId: crypto.randomUUID(),
      ...(s.traceId ? { traceId: s.traceId } : {}),
      userId: env.USER_ID,
      agentId: env.AGENT_ID,
      deploymentId: env.DEPLOYMENT_ID,
      runtimeProvider: "cloudflare",
      kind: "invoke",
      ts: s.startedAt,
      durationMs: s.durationMs,
      status: "ok",
      ...(s.usage ? { usage: s.usage } : {}),
    });
    await env.TELEMETRY.report({
      body,
      signature: await sign(env.TELEMETRY_SECRET, body),
      deploymentId: env.DEPLOYMENT_ID,
    });
  } catch (err) {
    console.warn(`telemetry report failed: ${(err as Error).message}`);
  }
}
