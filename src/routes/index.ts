// Assembles the gateway: middleware order, then every route group.
import { type App, type AppContext, handleError, newApp } from "../app";
import { ApiError, problemResponse } from "../lib/errors";
import { authenticate } from "../middleware/authenticate";
import { bodyGuard, DEFAULT_BODY_LIMIT_BYTES } from "../middleware/body-guard";
import { invokeBodyLimit } from "../middleware/invoke-body-limit";
import { requestContext } from "../middleware/request-context";
import { TELEMETRY_MAX_BODY_BYTES } from "../services/telemetry/event";
import { largestInvokeBodyBytes } from "../services/usage/tiers";
import { registerDocs } from "./docs";
import { registerAgentRoutes } from "./v1/agents";
import { registerAuditRoutes } from "./v1/audit";
import { registerDeploymentRoutes } from "./v1/deployments";
import { DEPLOY_BODY_LIMIT_BYTES } from "./v1/deployments/limits";
import { registerInvokeRoutes } from "./v1/invoke";
import { registerRecentMetrics } from "./v1/metrics/recent";
import { registerSecretRoutes } from "./v1/secrets";
import { registerTelemetryReport, TELEMETRY_REPORT_PATH } from "./v1/telemetry/report";
import { registerUsageRoutes } from "./v1/usage";

/**
 * Body limits by path; everything not listed gets the default. Invoke bodies are capped here at
 * the largest tier's `invokeBodyBytes` (before the caller is known); the caller's own tier limit
 * follows authentication (middleware/invoke-body-limit.ts).
 */
function bodyLimitFor(c: AppContext): number {
  const path = c.req.path;
  if (path === TELEMETRY_REPORT_PATH) return TELEMETRY_MAX_BODY_BYTES;
  if (/^\/v1\/agents\/[^/]+\/deploy$/.test(path)) return DEPLOY_BODY_LIMIT_BYTES;
  if (path.startsWith("/v1/invoke/")) return largestInvokeBodyBytes(c.get("config").tierLimits);
  return DEFAULT_BODY_LIMIT_BYTES;
}

/** Routes under /v1 that authenticate by other means than a user's bearer token. */
const PUBLIC_V1_PATHS = new Set<string>([TELEMETRY_REPORT_PATH]);

export function createGatewayApp(): App {
  const app = newApp();
  app.onError(handleError);
  app.notFound((c) =>
    problemResponse(
      new ApiError("route_not_found", `no route for ${c.req.method} ${c.req.path}`),
      c.get("requestId") ?? "req_unknown",
    ),
  );

  app.use("*", requestContext());
  app.use("/v1/*", bodyGuard(bodyLimitFor));
  const requireUser = authenticate();
  app.use("/v1/*", async (c, next) => (PUBLIC_V1_PATHS.has(c.req.path) ? next() : requireUser(c, next)));
  app.use("/v1/invoke/*", invokeBodyLimit());

  app.get("/healthz", (c) => c.json({ ok: true }));
  registerDocs(app);
  registerAgentRoutes(app);
  registerDeploymentRoutes(app);
  registerInvokeRoutes(app);
  registerTelemetryReport(app);
  registerRecentMetrics(app);
  registerUsageRoutes(app);
  registerSecretRoutes(app);
  registerAuditRoutes(app);
  return app;
}
