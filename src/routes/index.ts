// Assembles the gateway: the middleware every request passes, then every route group. Per-route
// policy (who may call it, how large a body it takes) is declared on each route (route-policy.ts).
import { type App, handleError, newApp } from "../app";
import { ApiError, problemResponse } from "../lib/errors";
import { requestContext } from "../middleware/request-context";
import { registerDashboard } from "./dashboard";
import { registerDocs } from "./docs";
import { registerAgentRoutes } from "./v1/agents";
import { registerApiKeyRoutes } from "./v1/api-keys";
import { registerAuditRoutes } from "./v1/audit";
import { registerDeploymentRoutes } from "./v1/deployments";
import { registerEgressRoutes } from "./v1/egress";
import { registerInvokeRoutes } from "./v1/invoke";
import { registerListAgentLogs } from "./v1/logs/list";
import { registerRecentMetrics } from "./v1/metrics/recent";
import { registerRolloutRoutes } from "./v1/rollouts";
import { registerRunRoutes } from "./v1/runs";
import { registerSecretRoutes } from "./v1/secrets";
import { registerSessionRoutes } from "./v1/sessions";
import { registerStatsRoutes } from "./v1/stats";
import { registerTelemetryReport } from "./v1/telemetry/report";
import { registerUsageRoutes } from "./v1/usage";
import { registerWebhookRoutes } from "./v1/webhooks";

export function createGatewayApp(): App {
  const app = newApp();
  app.onError(handleError);
  let allowedMethods: ((path: string) => string[]) | undefined;
  app.notFound((c) => {
    const requestId = c.get("requestId") ?? "req_unknown";
    allowedMethods ??= methodsByPath(app);
    const allowed = allowedMethods(c.req.path);
    if (allowed.length > 0) {
      const res = problemResponse(
        new ApiError("method_not_allowed", `${c.req.path} answers ${allowed.join(", ")}, not ${c.req.method}`),
        requestId,
      );
      res.headers.set("allow", allowed.join(", "));
      return res;
    }
    return problemResponse(new ApiError("route_not_found", `no route for ${c.req.method} ${c.req.path}`), requestId);
  });

  app.use("*", requestContext());

  app.get("/healthz", (c) => c.json({ ok: true }));
  registerDocs(app);
  registerDashboard(app);
  registerAgentRoutes(app);
  registerDeploymentRoutes(app);
  registerRolloutRoutes(app);
  registerInvokeRoutes(app);
  registerRunRoutes(app);
  registerSessionRoutes(app);
  registerListAgentLogs(app);
  registerTelemetryReport(app);
  registerRecentMetrics(app);
  registerUsageRoutes(app);
  registerSecretRoutes(app);
  registerEgressRoutes(app);
  registerAuditRoutes(app);
  registerApiKeyRoutes(app);
  registerWebhookRoutes(app);
  registerStatsRoutes(app);
  return app;
}

/**
 * The methods each registered path answers, for `405` + `Allow` on a known path with a wrong
 * method. Built from the app's own route table once every route is registered.
 */
function methodsByPath(app: App): (path: string) => string[] {
  const routes = app.routes
    .filter((r) => r.method !== "ALL")
    .map((r) => ({
      method: r.method,
      pattern: new RegExp(`^${r.path.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/:[^/]+/g, "[^/]+")}$`),
    }));
  return (path) => {
    const methods = new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method));
    if (methods.has("GET")) methods.add("HEAD");
    return [...methods].sort();
  };
}
