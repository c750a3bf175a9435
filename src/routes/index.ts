// Assembles the gateway: the middleware every request passes, then every route group. Per-route
// policy (who may call it, how large a body it takes) is declared on each route (route-policy.ts).
import { type App, handleError, newApp } from "../app";
import { ApiError, problemResponse } from "../lib/errors";
import { requestContext } from "../middleware/request-context";
import { registerDocs } from "./docs";
import { registerAgentRoutes } from "./v1/agents";
import { registerApiKeyRoutes } from "./v1/api-keys";
import { registerAuditRoutes } from "./v1/audit";
import { registerDeploymentRoutes } from "./v1/deployments";
import { registerInvokeRoutes } from "./v1/invoke";
import { registerRecentMetrics } from "./v1/metrics/recent";
import { registerSecretRoutes } from "./v1/secrets";
import { registerTelemetryReport } from "./v1/telemetry/report";
import { registerUsageRoutes } from "./v1/usage";

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
  registerApiKeyRoutes(app);
  return app;
}
