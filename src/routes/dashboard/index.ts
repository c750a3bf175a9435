// The web dashboard, served by the gateway itself: three files (HTML, one script, one stylesheet)
// built from dashboard/ into assets.generated.ts by scripts/build-dashboard.mjs. Served from the
// Worker rather than Workers static assets so that every answer passes the same middleware
// (request id, log line) and carries the headers below, set in one place and tested in the Workers
// runtime, with no [assets] configuration to keep in step between local, test and production.
// The pages are public (they hold no data); everything they show comes from /v1 with the
// credential the user pastes, sent as Authorization (no cookies).
import type { Context } from "hono";
import type { App, AppEnv } from "../../app";
import { DASHBOARD_ASSETS } from "./assets.generated";

/**
 * Scripts and styles only from this origin (no inline script or style, no eval), API calls only
 * to this origin, no frames, no plugins, no base or form targets; Trusted Types make any
 * innerHTML-style sink throw, as the dashboard builds its DOM with textContent only.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": DASHBOARD_CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  // Revalidated on every load (cheap: ETag), so a new gateway version is picked up at once.
  "cache-control": "no-cache",
};

function serve(c: Context<AppEnv>, path: string) {
  const asset = DASHBOARD_ASSETS[path];
  if (!asset) return c.notFound();
  const headers = new Headers(SECURITY_HEADERS);
  headers.set("etag", asset.etag);
  const match = c.req.header("if-none-match");
  if (match?.split(",").some((tag) => tag.trim() === asset.etag)) return new Response(null, { status: 304, headers });
  headers.set("content-type", asset.type);
  return new Response(asset.body, { status: 200, headers });
}

export function registerDashboard(app: App) {
  app.get("/", (c) => c.redirect("/dashboard/", 302));
  app.get("/dashboard", (c) => c.redirect("/dashboard/", 301));
  app.get("/dashboard/", (c) => serve(c, "/dashboard/"));
  app.get("/dashboard/app.js", (c) => serve(c, "/dashboard/app.js"));
  app.get("/dashboard/app.css", (c) => serve(c, "/dashboard/app.css"));
}
