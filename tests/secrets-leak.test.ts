// Secrets at rest, last item of the catalogue: no plaintext in any response or captured log line.
// One flow sets a secret (and fumbles it once), deploys a module that uses it, invokes it (JSON
// and SSE), lets it report signed telemetry through its binding, reports over HTTP with the
// deployment's key (correctly and wrongly signed), and reads everything back; every response body
// and every console line of the gateway during the flow is searched for the secret value and the
// telemetry key in each encoding. (tests/secrets-crypto.test.ts and tests/secrets.test.ts cover
// copied ciphertexts, flipped bits, unknown key ids, IV uniqueness and plaintext in D1.)
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { telemetrySecretAad } from "../src/crypto/aad";
import { sha256Hex, toBase64Url } from "../src/crypto/encoding";
import { decryptSecret } from "../src/crypto/envelope";
import { getConfig } from "../src/env";
import { newUser } from "./helpers/auth";
import { createAgent, deploy, userIdOf, userMessage } from "./helpers/deploy-flow";
import { signTelemetry } from "./helpers/deployments";
import { call } from "./helpers/http";
import { findPlaintextInD1 } from "./helpers/plaintext-scan";
import { collectSse } from "./helpers/sse";
import { waitFor } from "./helpers/wait";

/** Uses API_KEY (answers its sha256, never the value) and reports one signed event per call. */
const USES_SECRET = `export default {
  async fetch(req, env, ctx) {
    if (req.method === "GET") return new Response("ok");
    const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
    const digest = hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(env.API_KEY)));
    const body = JSON.stringify({
      eventId: crypto.randomUUID(), userId: env.USER_ID, agentId: env.AGENT_ID, deploymentId: env.DEPLOYMENT_ID,
      runtimeProvider: "cloudflare", kind: "invoke", ts: Date.now(), status: "ok",
    });
    const raw = Uint8Array.from(atob(env.TELEMETRY_SECRET.replaceAll("-", "+").replaceAll("_", "/")), (c) => c.charCodeAt(0));
    const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const signature = "v1=" + hex(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
    const reported = await env.TELEMETRY.report({ body, signature, deploymentId: env.DEPLOYMENT_ID });
    return Response.json({ output: { text: digest }, usage: { inputTokens: reported.accepted, outputTokens: 0 } });
  },
};`;

const hexOf = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const base64Of = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

afterEach(() => {
  vi.restoreAllMocks();
});

describe("secrets at rest: no plaintext in responses or logs", () => {
  it("never shows an agent secret or a telemetry key in any response body or console line", async () => {
    const logged: string[] = [];
    for (const method of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        logged.push(args.map((a) => (typeof a === "string" ? a : (JSON.stringify(a) ?? String(a)))).join(" "));
      });
    }
    const bodies: string[] = [];
    const seen = async (res: Response) => {
      bodies.push(await res.clone().text());
      return res;
    };

    const { headers, subject } = await newUser("leak");
    const agent = await createAgent(headers);
    const secret = `sk-leak-${crypto.randomUUID()}`;
    const secretsPath = `/v1/agents/${agent.id}/secrets`;
    expect((await seen(await call("PUT", `${secretsPath}/API_KEY`, { headers, body: { value: secret } }))).status).toBe(
      201,
    );
    // Fumbled writes: too long, an unknown field, broken JSON. None may echo the value.
    const fumbles = [
      { body: { value: `${secret}${"x".repeat(6000)}` } },
      { body: { value: secret, note: secret } },
      { rawBody: `{"value": "${secret}`, headers: { ...headers, "content-type": "application/json" } },
    ];
    for (const f of fumbles) {
      const res = await seen(await call("PUT", `${secretsPath}/API_KEY`, { headers, ...f }));
      expect(res.status).toBe(400);
    }
    await seen(await call("PUT", `${secretsPath}/TELEMETRY_SECRET`, { headers, body: { value: secret } }));

    const deployment = await deploy(headers, agent.id, { moduleCode: USES_SECRET });
    await waitFor(
      async () => {
        const res = await seen(await call("GET", `/v1/agents/${agent.id}/deployments/${deployment.id}`, { headers }));
        const d = (await res.json()) as { deployment: { status: string } };
        return d.deployment.status === "deploying" ? undefined : d.deployment.status;
      },
      { timeoutMs: 15_000, what: "the deployment to settle" },
    ).then((status) => expect(status).toBe("active"));

    const invoked = await seen(await call("POST", `/v1/invoke/${agent.id}`, { headers, body: userMessage("use it") }));
    expect(invoked.status).toBe(200);
    const answer = (await invoked.json()) as { output: { text: string }; usage: { inputTokens: number } };
    expect(answer.output.text).toBe(await sha256Hex(secret));
    expect(answer.usage.inputTokens).toBe(1);
    const streamed = await seen(
      await call("POST", `/v1/invoke/${agent.id}/stream`, { headers, body: userMessage("use it again") }),
    );
    expect((await collectSse(streamed)).map((e) => e.event)).toEqual(["delta", "done"]);

    // The deployment's telemetry key, as the worker holds it, and reports signed with it.
    const row = await env.DB.prepare("SELECT telemetry_secret_ciphertext AS c FROM deployments WHERE id = ?")
      .bind(deployment.id)
      .first<{ c: string }>();
    const key = await decryptSecret((await getConfig(env)).keyring, row!.c, telemetrySecretAad(deployment.id));
    const userId = await userIdOf(subject);
    const event = JSON.stringify({
      eventId: crypto.randomUUID(),
      userId,
      agentId: agent.id,
      deploymentId: deployment.id,
      runtimeProvider: "cloudflare",
      kind: "invoke",
      ts: Date.now(),
      status: "ok",
    });
    const report = (signature: string) =>
      call("POST", "/v1/telemetry/report", {
        headers: {
          "content-type": "application/json",
          "x-telemetry-signature": signature,
          "x-telemetry-deployment-id": deployment.id,
        },
        rawBody: event,
      });
    expect((await seen(await report(await signTelemetry(key, event)))).status).toBe(202);
    expect((await seen(await report(`v1=${"0".repeat(64)}`))).status).toBe(401);
    expect((await seen(await report(await signTelemetry(key, `${event} `)))).status).toBe(401);

    for (const path of [
      secretsPath,
      `/v1/agents/${agent.id}`,
      `/v1/agents/${agent.id}/deployments`,
      `/v1/metrics/recent?agentId=${agent.id}`,
      "/v1/audit",
      "/v1/usage/current",
      "/openapi.json",
    ]) {
      expect((await seen(await call("GET", path, { headers }))).status, path).toBe(200);
    }

    const needles = {
      "the secret value": secret,
      "the telemetry key (base64url)": toBase64Url(key),
      "the telemetry key (base64)": base64Of(key).replace(/=+$/, ""),
      "the telemetry key (hex)": hexOf(key),
    };
    const hits: string[] = [];
    for (const [what, needle] of Object.entries(needles)) {
      for (const [i, b] of bodies.entries())
        if (b.includes(needle)) hits.push(`${what} in response ${i}: ${b.slice(0, 120)}`);
      for (const [i, l] of logged.entries())
        if (l.includes(needle)) hits.push(`${what} in log line ${i}: ${l.slice(0, 120)}`);
    }
    expect(hits).toEqual([]);
    // The search had something to search: every request was logged, the deploy job too.
    expect(logged.filter((l) => l.includes('"event":"request"')).length).toBeGreaterThanOrEqual(bodies.length);
    expect(logged.some((l) => l.includes('"event":"deploy_job"') && l.includes(deployment.id))).toBe(true);
    expect(await findPlaintextInD1([secret, toBase64Url(key), hexOf(key)])).toEqual([]);
  });
});
