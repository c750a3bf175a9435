// The dashboard (src/routes/dashboard, dashboard/) in headless chromium against wrangler dev, as a
// user sees it: sign in with a token, find the agent, watch a deployment made through the API go
// active, roll it back with the button and check the API agrees; secrets are set by name with the
// value never on the page; a line the agent prints reaches the live logs view within 5 s (the real
// logs route). Screenshots at a desktop and a phone width go to
// test-results/screenshots/ (git-ignored). Fails on any page error or Content-Security-Policy
// violation.
import { mkdirSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, e2e, expectJson, newUser, type User, waitFor } from "../e2e/harness.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = "test-results/screenshots";
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

type Deployment = { id: string; status: string };

async function deployThroughApi(user: User, agentId: string, body: Record<string, unknown> = {}): Promise<Deployment> {
  const { deployment } = await expectJson<{ deployment: Deployment }>(
    await api("POST", `/v1/agents/${agentId}/deploy`, { user, body }),
    202,
  );
  return deployment;
}

async function waitActive(user: User, agentId: string, deploymentId: string) {
  return waitFor(`${deploymentId} active`, async () => {
    const { deployment } = await expectJson<{ deployment: Deployment }>(
      await api("GET", `/v1/agents/${agentId}/deployments/${deploymentId}`, { user }),
      200,
    );
    if (deployment.status === "failed") throw new Error(`${deploymentId} failed`);
    return deployment.status === "active" ? deployment : undefined;
  });
}

const fixedAnswer = (text: string) =>
  `export default { fetch() { return Response.json({ output: { text: ${JSON.stringify(text)} } }); } };`;

describe("the dashboard in a real browser", () => {
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // CI runs as root, where chromium's sandbox cannot start.
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
    const context = await browser.newContext({ viewport: DESKTOP });
    page = await context.newPage();
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      if (/Content Security Policy|Refused to|TrustedHTML|Trusted Type/i.test(msg.text())) {
        problems.push(`console: ${msg.text()}`);
      }
    });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it("signs in, sees the agent and its deployment go active, rolls back with the button, and the API agrees", async () => {
    const user = await newUser("dashboard");
    const { agent } = await expectJson<{ agent: { id: string } }>(
      await api("POST", "/v1/agents", { user, body: { name: "dashboard-demo" } }),
      201,
    );
    const v1 = await waitActive(user, agent.id, (await deployThroughApi(user, agent.id)).id);
    for (const text of ["hello", "dashboard"]) {
      await expectJson(
        await api("POST", `/v1/invoke/${agent.id}`, { user, body: { messages: [{ role: "user", content: text }] } }),
        200,
      );
    }
    // The 24 h health shows once the usage queue has metered the two invocations.
    await waitFor("stats to count the invocations", async () => {
      const { stats } = await expectJson<{ stats: { totals: { invocations: number } } }>(
        await api("GET", `/v1/agents/${agent.id}/stats?window=24h`, { user }),
        200,
      );
      return stats.totals.invocations === 2 ? true : undefined;
    });

    // Sign in: the page asks for a credential first, and keeps it in sessionStorage only.
    await page.goto(`${e2e.baseUrl}/dashboard/`);
    await page.getByLabel("Token or API key").fill(user.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    const row = page.locator(`tr[data-agent-id="${agent.id}"]`);
    await expect.poll(() => row.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await row.textContent()).toContain("dashboard-demo");
    expect(await row.textContent()).toContain("serving");
    await expect.poll(() => row.textContent(), { timeout: 10_000 }).toMatch(/2 calls · 0\.0% errors · p95 \d+ ms/);
    expect(await page.evaluate(() => sessionStorage.getItem("webhost.credential"))).toBe(user.token);
    expect(await page.context().cookies()).toEqual([]);
    expect(await page.content()).not.toContain(user.token);
    await page.screenshot({ path: `${SHOTS}/agents-desktop.png`, fullPage: true });

    // The agent's page: a deployment made through the API is seen going active.
    await row.getByRole("link", { name: "dashboard-demo" }).click();
    const deploymentRow = (id: string) => page.locator(`tr[data-deployment-id="${id}"]`);
    await expect.poll(() => deploymentRow(v1.id).getAttribute("data-status"), { timeout: 10_000 }).toBe("active");
    await expect
      .poll(() => page.locator("#health-figures").textContent(), { timeout: 10_000 })
      .toContain("2invocations");
    const v2 = await deployThroughApi(user, agent.id, { moduleCode: fixedAnswer("version two") });
    await expect.poll(() => deploymentRow(v2.id).getAttribute("data-status"), { timeout: 15_000 }).toBe("active");
    await expect.poll(() => deploymentRow(v1.id).getAttribute("data-status"), { timeout: 5_000 }).toBe("inactive");
    await expect.poll(() => page.locator("#active-deployment").textContent(), { timeout: 5_000 }).toBe(v2.id);

    // A secret is set by name; its value leaves the page with the request and is never shown.
    const secretValue = `s3cret-${crypto.randomUUID()}`;
    await page.getByLabel("Secret name").fill("DASHBOARD_SECRET");
    await page.getByLabel("Secret value").fill(secretValue);
    await page.getByRole("button", { name: "Set secret" }).click();
    await expect.poll(() => page.locator("#secrets").textContent(), { timeout: 10_000 }).toContain("DASHBOARD_SECRET");
    expect(await page.getByLabel("Secret value").inputValue()).toBe("");
    expect(await page.content()).not.toContain(secretValue);
    const { secrets } = await expectJson<{ secrets: Array<{ name: string }> }>(
      await api("GET", `/v1/agents/${agent.id}/secrets`, { user }),
      200,
    );
    expect(secrets.map((s) => s.name)).toEqual(["DASHBOARD_SECRET"]);
    await page.screenshot({ path: `${SHOTS}/agent-desktop.png`, fullPage: true });

    // Roll back with the button: the API agrees, and the agent answers from the first deployment.
    await page.getByRole("button", { name: "Roll back" }).click();
    await expect.poll(() => deploymentRow(v1.id).getAttribute("data-status"), { timeout: 10_000 }).toBe("active");
    await expect
      .poll(() => page.locator("#deployments").textContent(), { timeout: 5_000 })
      .toContain(`Rolled back: ${v1.id} is active.`);
    const { agent: after } = await expectJson<{ agent: { activeDeploymentId: string } }>(
      await api("GET", `/v1/agents/${agent.id}`, { user }),
      200,
    );
    expect(after.activeDeploymentId).toBe(v1.id);
    const { deployments } = await expectJson<{ deployments: Deployment[] }>(
      await api("GET", `/v1/agents/${agent.id}/deployments`, { user }),
      200,
    );
    expect(Object.fromEntries(deployments.map((d) => [d.id, d.status]))).toEqual({
      [v1.id]: "active",
      [v2.id]: "inactive",
    });
    const answer = await api("POST", `/v1/invoke/${agent.id}`, {
      user,
      body: { messages: [{ role: "user", content: "after rollback" }] },
    });
    expect(answer.headers.get("x-deployment-id")).toBe(v1.id);
    await answer.body?.cancel();

    // A phone's width: readable without sideways scrolling.
    await page.setViewportSize(PHONE);
    await page.reload();
    await expect.poll(() => deploymentRow(v1.id).getAttribute("data-status"), { timeout: 10_000 }).toBe("active");
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await page.screenshot({ path: `${SHOTS}/agent-phone.png`, fullPage: true });
    await page.goto(`${e2e.baseUrl}/dashboard/#/agents`);
    await expect.poll(() => row.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await page.screenshot({ path: `${SHOTS}/agents-phone.png`, fullPage: true });

    // API keys: listed by name and prefix (never the key), revoked with the button.
    const created = await expectJson<{ apiKey: { id: string; prefix: string }; key: string }>(
      await api("POST", "/v1/api-keys", { user, body: { name: "dashboard-ci", scopes: ["agents:read"] } }),
      201,
    );
    await page.setViewportSize(DESKTOP);
    await page.goto(`${e2e.baseUrl}/dashboard/#/keys`);
    const keyRow = page.locator("tr", { hasText: "dashboard-ci" });
    await expect.poll(() => keyRow.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await keyRow.textContent()).toContain(created.apiKey.prefix);
    expect(await page.content()).not.toContain(created.key);
    await keyRow.getByRole("button", { name: "Revoke" }).click();
    await expect.poll(() => keyRow.count(), { timeout: 10_000 }).toBe(0);
    const { apiKeys } = await expectJson<{ apiKeys: unknown[] }>(await api("GET", "/v1/api-keys", { user }), 200);
    expect(apiKeys).toEqual([]);

    // Signing out forgets the credential.
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect.poll(() => page.getByLabel("Token or API key").isVisible()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem("webhost.credential"))).toBeNull();

    expect(problems).toEqual([]);
  });

  it("refuses a bad credential on the sign-in page and stores nothing", async () => {
    await page.setViewportSize(DESKTOP);
    await page.goto(`${e2e.baseUrl}/dashboard/`);
    // Independent of the test before: a tab that was never signed in.
    await page.evaluate(() => sessionStorage.clear());
    await page.reload();
    await page.getByLabel("Token or API key").fill("whk_not_a_real_key");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent(), { timeout: 10_000 }).toContain("refused");
    expect(await page.evaluate(() => sessionStorage.getItem("webhost.credential"))).toBeNull();
    expect(problems).toEqual([]);
  });

  it("shows a line the agent printed in the live view within 5 seconds of the call", async () => {
    const user = await newUser("live-logs");
    const { agent } = await expectJson<{ agent: { id: string } }>(
      await api("POST", "/v1/agents", { user, body: { name: "live-logs-demo" } }),
      201,
    );
    const marker = `printed-${crypto.randomUUID()}`;
    const printing = `export default { fetch() {
      console.log(${JSON.stringify(marker)});
      return Response.json({ output: { text: "logged" } });
    } };`;
    await waitActive(user, agent.id, (await deployThroughApi(user, agent.id, { moduleCode: printing })).id);
    await page.setViewportSize(DESKTOP);
    await page.goto(`${e2e.baseUrl}/dashboard/`);
    await page.evaluate(() => sessionStorage.clear());
    await page.reload();
    await page.getByLabel("Token or API key").fill(user.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator(`tr[data-agent-id="${agent.id}"] a`).click();
    // The live view is following the real logs route before the agent prints.
    await expect.poll(() => page.locator("#logs-state").textContent(), { timeout: 15_000 }).toBe("following");
    const called = Date.now();
    await expectJson(
      await api("POST", `/v1/invoke/${agent.id}`, { user, body: { messages: [{ role: "user", content: "print" }] } }),
      200,
    );
    await expect
      .poll(() => page.locator("#log-lines").textContent(), { timeout: 5_000, interval: 100 })
      .toContain(marker);
    expect(Date.now() - called).toBeLessThan(5_000);
    expect(problems).toEqual([]);
  });

  it("follows live logs by the logs contract: recent lines, then the stream, sampling notes, and a resume with Last-Event-ID", async () => {
    // The logs routes are another part of the gateway; here the browser is answered by
    // Playwright with exactly what their contract says, so this checks the dashboard's reader.
    const user = await newUser("logs");
    const { agent } = await expectJson<{ agent: { id: string } }>(
      await api("POST", "/v1/agents", { user, body: { name: "logs-demo" } }),
      201,
    );
    const line = (id: number, message: string, level = "log") => ({
      id,
      ts: new Date().toISOString(),
      level,
      message,
      deploymentId: "dep_x",
      requestId: `req_${id}`,
    });
    const follows: Array<{ auth: string | undefined; lastEventId: string | undefined }> = [];
    await page.route(`**/v1/agents/${agent.id}/logs**`, async (route) => {
      const request = route.request();
      const url = new URL(request.url());
      const headers = await request.allHeaders();
      if (url.searchParams.get("follow") !== "1") {
        expect(headers.authorization).toBe(`Bearer ${user.token}`);
        await route.fulfill({ json: { logs: [line(1, "recent <b>line</b>")], nextCursor: null } });
        return;
      }
      follows.push({ auth: headers.authorization, lastEventId: headers["last-event-id"] });
      const body =
        follows.length === 1
          ? `: heartbeat\n\nid: 1\nevent: log\ndata: ${JSON.stringify(line(1, "recent <b>line</b>"))}\n\n` +
            `id: 2\r\nevent: log\r\ndata: ${JSON.stringify(line(2, "second", "error"))}\r\n\r\n` +
            `event: sampled\ndata: {"dropped":7}\n\n`
          : follows.length === 2
            ? `id: 3\nevent: log\ndata: ${JSON.stringify(line(3, "after the reconnect"))}\n\n`
            : ": heartbeat\n\n";
      await route.fulfill({ status: 200, headers: { "content-type": "text/event-stream" }, body });
    });
    await page.setViewportSize(DESKTOP);
    await page.goto(`${e2e.baseUrl}/dashboard/`);
    await page.evaluate(() => sessionStorage.clear());
    await page.reload();
    await page.getByLabel("Token or API key").fill(user.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator(`tr[data-agent-id="${agent.id}"] a`).click();
    const lines = page.locator("#log-lines > li");
    await expect.poll(() => lines.count(), { timeout: 15_000 }).toBe(4);
    const texts = await lines.allTextContents();
    expect(texts[0]).toContain("recent <b>line</b>"); // shown as text, never as markup
    expect(texts[1]).toContain("second");
    expect(texts[1]).toContain("error");
    expect(texts[2]).toContain("7 lines dropped");
    expect(texts[3]).toContain("after the reconnect");
    expect(await page.locator("#log-lines b").count()).toBe(0);
    // The follow resumes after the newest recent line, so nothing printed in between is lost.
    expect(follows[0]).toEqual({ auth: `Bearer ${user.token}`, lastEventId: "1" });
    expect(follows[1]).toEqual({ auth: `Bearer ${user.token}`, lastEventId: "2" });
    await page.unroute(`**/v1/agents/${agent.id}/logs**`);
    expect(problems).toEqual([]);
  });
});
