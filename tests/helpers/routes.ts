// The routes the app actually serves, as "METHOD /path/{param}", read from Hono's route table.
import { createGatewayApp } from "../../src/routes";

const NON_API_PATHS = new Set([
  "/openapi.json",
  "/docs",
  "/healthz",
  "/",
  "/dashboard",
  "/dashboard/",
  "/dashboard/app.js",
  "/dashboard/app.css",
]);

/**
 * The API routes (what the OpenAPI document describes); with `includeNonApi`, also the document,
 * the docs page, the health check and the dashboard's files (what the authorization matrix must cover).
 */
export function servedRoutes(opts: { includeNonApi?: boolean } = {}): string[] {
  const out = new Set<string>();
  for (const r of createGatewayApp().routes) {
    if (r.method === "ALL") continue;
    if (!opts.includeNonApi && NON_API_PATHS.has(r.path)) continue;
    out.add(`${r.method.toUpperCase()} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
  }
  return [...out].sort();
}
