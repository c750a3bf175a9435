// The custom agent the e2e suite deploys next to the built-in template: an ES module, exactly
// the text a user would send as `moduleCode`. It is the user's own code, so it may show the suite
// what only an agent can see:
// - JSON: `{ output: { text }, deploymentId, greeting }`: which deployment answered (its own
//   env.DEPLOYMENT_ID) and the agent secret GREETING as this deployment's env holds it (null when
//   unset), so the suite can tell which deployment ran and which secrets it was deployed with.
// - `metadata.signTelemetry: { eventId, durationMs, usage }`: the answer also carries
//   `telemetry: { body, signature, deploymentId }`, a telemetry event for this deployment signed
//   with its TELEMETRY_SECRET. The secret never leaves the agent; the suite POSTs the signed bytes
//   to /v1/telemetry/report as a runtime outside Cloudflare would.
// - SSE (`Accept: text/event-stream`): `delta` "first ", then a pause of PROBE_PAUSE_MS, then
//   `delta` "last" carrying `producedAt` (the agent's clock when it wrote that event), then
//   `done` — so the suite can show the first event reached it before the last one existed.

/** The pause between the stream's two deltas. */
export const PROBE_PAUSE_MS = 600;

export const PROBE_AGENT_SOURCE = `
const PAUSE_MS = ${PROBE_PAUSE_MS};
const encoder = new TextEncoder();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const sse = (name, data) => encoder.encode("event: " + name + "\\ndata: " + JSON.stringify(data) + "\\n\\n");

function keyBytes(base64url) {
  const normal = base64url.replaceAll("-", "+").replaceAll("_", "/");
  const bin = atob(normal.padEnd(Math.ceil(normal.length / 4) * 4, "="));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function sign(secret, body) {
  const key = await crypto.subtle.importKey("raw", keyBytes(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(body)));
  return "v1=" + [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function signedTelemetry(env, spec) {
  const body = JSON.stringify({
    eventId: spec.eventId,
    userId: env.USER_ID,
    agentId: env.AGENT_ID,
    deploymentId: env.DEPLOYMENT_ID,
    runtimeProvider: env.RUNTIME_PROVIDER,
    kind: "invoke",
    ts: Date.now(),
    durationMs: spec.durationMs,
    status: "ok",
    usage: spec.usage,
  });
  return { body, signature: await sign(env.TELEMETRY_SECRET, body), deploymentId: env.DEPLOYMENT_ID };
}

export default {
  async fetch(request, env, ctx) {
    if (request.method !== "POST") return Response.json({ ok: true, agent: "e2e-probe" });
    const { messages, metadata } = await request.json();
    if ((request.headers.get("accept") ?? "").includes("text/event-stream")) {
      const { readable, writable } = new TransformStream();
      const writer = writable.getWriter();
      ctx.waitUntil(
        (async () => {
          await writer.write(sse("delta", { text: "first " }));
          await sleep(PAUSE_MS);
          const producedAt = Date.now();
          await writer.write(sse("delta", { text: "last", producedAt }));
          await writer.write(sse("done", { output: { text: "first last" }, producedAt }));
          await writer.close();
        })().catch(() => writer.abort().catch(() => {})),
      );
      return new Response(readable, { headers: { "content-type": "text/event-stream" } });
    }
    const answer = {
      output: { text: "probe: " + messages[messages.length - 1].content },
      deploymentId: env.DEPLOYMENT_ID,
      greeting: env.GREETING ?? null,
    };
    if (metadata && metadata.signTelemetry) answer.telemetry = await signedTelemetry(env, metadata.signTelemetry);
    return Response.json(answer);
  },
};
`;
