// The dashboard's files as the gateway serves them: a strict Content-Security-Policy that the
// page itself obeys (no inline script or style, nothing from another origin), revalidation by
// ETag, and nothing in them that could leak or inject (the browser test drives the pages).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DASHBOARD_ASSETS } from "../src/routes/dashboard/assets.generated";
import { call } from "./helpers/http";

const FILES = ["/dashboard/", "/dashboard/app.js", "/dashboard/app.css"];

describe("the dashboard's files", () => {
  it("are served with a strict CSP and the security headers, to anyone (they hold no data)", async () => {
    for (const path of FILES) {
      const res = await call("GET", path);
      expect(res.status, path).toBe(200);
      const csp = res.headers.get("content-security-policy") ?? "";
      const directives = Object.fromEntries(
        csp.split(";").map((d) => {
          const [name, ...values] = d.trim().split(/\s+/);
          return [name, values.join(" ")];
        }),
      );
      expect(directives).toMatchObject({
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "connect-src": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "require-trusted-types-for": "'script'",
      });
      expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:|\*/);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("set-cookie")).toBeNull();
      expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    }
    expect((await call("GET", "/dashboard/app.js")).headers.get("content-type")).toMatch(/^text\/javascript/);
    expect((await call("GET", "/dashboard/app.css")).headers.get("content-type")).toMatch(/^text\/css/);
  });

  it("the page obeys its own policy: no inline script, style or handler, nothing from another origin", async () => {
    const html = await (await call("GET", "/dashboard/")).text();
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBe(1);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/src="\/dashboard\/app\.js"/);
      expect(body?.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=|javascript:/i);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    const js = await (await call("GET", "/dashboard/app.js")).text();
    // The DOM is built with textContent only (Trusted Types would refuse these sinks anyway).
    expect(js).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/);
    expect(js).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
    // The credential lives in sessionStorage and never in a cookie or localStorage.
    expect(js).toContain("sessionStorage");
    expect(js).not.toMatch(/document\.cookie|localStorage/);
    const css = await (await call("GET", "/dashboard/app.css")).text();
    expect(css).not.toMatch(/@import|url\(/);
  });

  it("hold none of the gateway's secrets", async () => {
    const secrets = [env.SECRETS_ENCRYPTION_KEY, env.TEST_SIGNING_JWKS].filter((s): s is string => Boolean(s));
    for (const asset of Object.values(DASHBOARD_ASSETS)) {
      for (const secret of secrets) expect(asset.body).not.toContain(secret);
    }
  });

  it("are revalidated by ETag (304 without a body) and redirected to from / and /dashboard", async () => {
    const first = await call("GET", "/dashboard/app.js");
    const etag = first.headers.get("etag");
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(first.headers.get("cache-control")).toBe("no-cache");
    const again = await call("GET", "/dashboard/app.js", { headers: { "if-none-match": etag as string } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    expect(again.headers.get("content-security-policy")).toContain("default-src 'none'");
    const stale = await call("GET", "/dashboard/app.js", { headers: { "if-none-match": '"0000"' } });
    expect(stale.status).toBe(200);
    // The test client follows redirects, as a browser does: both end on the page.
    const page = await (await call("GET", "/dashboard/")).text();
    for (const path of ["/", "/dashboard"]) {
      const res = await call("GET", path);
      expect(res.redirected, path).toBe(true);
      expect(new URL(res.url).pathname).toBe("/dashboard/");
      expect(await res.text()).toBe(page);
    }
    const missing = await call("GET", "/dashboard/nope.js");
    expect(missing.status).toBe(404);
  });
});
