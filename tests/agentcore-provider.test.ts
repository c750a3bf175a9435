// The AgentCore provider's pure parts: when it is offered (configuration), and the names, tokens
// and session ids it sends AWS, which AWS validates (tests/e2e/agentcore.e2e.test.ts and
// tests/runtime-contract.test.ts run it against the fake AWS).
import { describe, expect, it } from "vitest";
import { newId } from "../src/lib/ids";
import { runtimeProviderUnavailable } from "../src/runtime";
import { clientTokenFor, runtimeNameFor, sessionIdFor } from "../src/runtime/agentcore/provider";
import { scriptNameFor } from "../src/runtime/user-script";

const CONFIGURED = {
  AGENTCORE_REGION: "us-west-2",
  AGENTCORE_ROLE_ARN: "arn:aws:iam::123456789012:role/agents",
  AGENTCORE_ARTIFACT_BUCKET: "webhost-artifacts-agentcore",
  AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
  AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  GATEWAY_PUBLIC_URL: "https://api.example.com",
};

describe("agentcore configuration", () => {
  it("is offered only when every required value is set, naming what is missing", () => {
    expect(runtimeProviderUnavailable({}, "cloudflare")).toBeNull();
    expect(runtimeProviderUnavailable(CONFIGURED, "agentcore")).toBeNull();
    expect(runtimeProviderUnavailable({ ...CONFIGURED, AWS_SECRET_ACCESS_KEY: " " }, "agentcore")).toBe(
      "the gateway is not configured for agentcore (missing: AWS_SECRET_ACCESS_KEY)",
    );
    expect(runtimeProviderUnavailable({}, "agentcore")).toContain(
      "AGENTCORE_REGION, AGENTCORE_ROLE_ARN, AGENTCORE_ARTIFACT_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, GATEWAY_PUBLIC_URL",
    );
  });

  it("refuses invalid values naming the variable and the rule, never a value", () => {
    const why = runtimeProviderUnavailable(
      { ...CONFIGURED, AGENTCORE_REGION: "mars", AGENTCORE_S3_ENDPOINT: "not a url" },
      "agentcore",
    );
    expect(why).toContain("AGENTCORE_REGION: must be an AWS region");
    expect(why).toContain("AGENTCORE_S3_ENDPOINT");
    expect(why).not.toContain("mars");
    expect(why).not.toContain(CONFIGURED.AWS_SECRET_ACCESS_KEY);
  });
});

describe("what the provider sends AWS", () => {
  it("derives a valid runtime name and a 33+ character clientToken from the deployment", () => {
    for (let i = 0; i < 20; i++) {
      const id = newId("deployment");
      expect(runtimeNameFor(scriptNameFor(id))).toMatch(/^[a-zA-Z][a-zA-Z0-9_]{0,47}$/);
      const token = clientTokenFor(id);
      expect(token).toMatch(/^[a-zA-Z0-9](-*[a-zA-Z0-9]){32,255}$/);
      expect(clientTokenFor(id)).toBe(token);
    }
  });

  it("keeps one session per agent and invoke/v1 sessionId, never the tenant's id itself", async () => {
    const a = await sessionIdFor("agt_a", "chat-1");
    expect(a.length).toBeGreaterThanOrEqual(33);
    expect(await sessionIdFor("agt_a", "chat-1")).toBe(a);
    expect(await sessionIdFor("agt_b", "chat-1")).not.toBe(a);
    expect(a).not.toContain("chat-1");
    const fresh = await sessionIdFor("agt_a", undefined);
    expect(fresh.length).toBeGreaterThanOrEqual(33);
    expect(await sessionIdFor("agt_a", undefined)).not.toBe(fresh);
  });
});
