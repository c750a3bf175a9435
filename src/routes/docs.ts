// GET /openapi.json (OpenAPI 3.1, generated from the route schemas) and GET /docs: a
// self-contained HTML page rendered from the same document, so it works with no CDN.
import type { App } from "../app";
import { IDEMPOTENCY_KEY_PARAMETER, RESPONSE_HEADERS } from "./openapi-shared";

const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "webhost.systems control plane",
    version: "1.0.0",
    description: "Deploy AI agents to the edge and invoke them over HTTPS. Errors are RFC 9457 problem+json.",
  },
} as const;

export function registerDocs(app: App) {
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT or API key (whk_…)",
    description:
      "A user's OIDC JWT, or an API key (`whk_…`). Each operation lists the API-key scope it needs; `jwt` means only a user token.",
  });
  for (const [name, header] of Object.entries(RESPONSE_HEADERS)) {
    app.openAPIRegistry.registerComponent("headers", name, header);
  }
  app.openAPIRegistry.registerComponent("parameters", "IdempotencyKey", IDEMPOTENCY_KEY_PARAMETER);
  app.doc31("/openapi.json", OPENAPI_INFO);
  app.get("/docs", (c) => {
    const doc = app.getOpenAPI31Document(OPENAPI_INFO);
    const rows: string[] = [];
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      for (const [method, op] of Object.entries(item ?? {})) {
        const summary = (op as { summary?: string }).summary ?? "";
        rows.push(
          `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escapeHtml(path)}</code></td><td>${escapeHtml(summary)}</td></tr>`,
        );
      }
    }
    return c.html(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${OPENAPI_INFO.info.title} API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}td{padding:.25rem .75rem;border-bottom:1px solid #ddd;vertical-align:top}code{font-size:14px}</style></head>
<body><h1>${OPENAPI_INFO.info.title} API</h1><p>${escapeHtml(OPENAPI_INFO.info.description)}</p>
<p>Machine-readable document: <a href="/openapi.json">/openapi.json</a>. Authenticate with <code>Authorization: Bearer &lt;JWT&gt;</code>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What it does</th></tr></thead><tbody>${rows.join("")}</tbody></table></body></html>`);
  });
}

function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}
