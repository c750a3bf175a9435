import { createRoute } from "@hono/zod-openapi";
import type { App, AppContext } from "../../../app";
import { createDb } from "../../../db/client";
import { createRuntimeProvider } from "../../../runtime";
import { invokeAgent } from "../../../services/invocations/invoke";
import { bearerSecurity, problemResponse, problemResponses } from "../../openapi-shared";
import { InvokeParams, InvokeRequestSchema, InvokeResponseSchema } from "./schemas";

const upstreamProblems = {
  409: problemResponse("The agent is disabled or has no active deployment"),
  413: problemResponse("Body too large"),
  502: problemResponse(
    "The agent failed: it threw, answered an error status, or answered something that is not invoke/v1",
  ),
  504: problemResponse("The agent did not answer in time"),
};

const jsonRoute = createRoute({
  method: "post",
  path: "/v1/invoke/{agentId}",
  tags: ["invoke"],
  summary: "Invoke an agent's active deployment (invoke/v1, JSON)",
  security: bearerSecurity,
  request: {
    params: InvokeParams,
    body: { required: true, content: { "application/json": { schema: InvokeRequestSchema } } },
  },
  responses: {
    200: {
      description: "The agent's answer, passed through (header x-deployment-id names the deployment that answered)",
      content: { "application/json": { schema: InvokeResponseSchema } },
    },
    ...problemResponses,
    ...upstreamProblems,
  },
});

const streamRoute = createRoute({
  method: "post",
  path: "/v1/invoke/{agentId}/stream",
  tags: ["invoke"],
  summary: "Invoke an agent and stream its answer as server-sent events (delta…, then done or error)",
  security: bearerSecurity,
  request: {
    params: InvokeParams,
    body: { required: true, content: { "application/json": { schema: InvokeRequestSchema } } },
  },
  responses: {
    200: {
      description:
        "text/event-stream: `delta` events ({ text }), then `done` (the full invoke/v1 response) or `error` ({ code, message })",
      content: { "text/event-stream": { schema: { type: "string" } } },
    },
    ...problemResponses,
    ...upstreamProblems,
  },
});

async function handle(c: AppContext, agentId: string, body: Parameters<typeof invokeAgent>[2], stream: boolean) {
  const config = c.get("config");
  return invokeAgent(
    {
      db: createDb(c.env.DB),
      usageQueue: c.env.USAGE_QUEUE,
      userId: c.get("userId"),
      keyring: config.keyring,
      tierLimits: config.tierLimits,
      runtime: createRuntimeProvider({ env: c.env, ctx: c.executionCtx as ExecutionContext, config }),
      requestId: c.get("requestId"),
      timeoutMs: config.invokeTimeoutMs,
      waitUntil: (p) => c.executionCtx.waitUntil(p),
    },
    agentId,
    body,
    { stream },
  );
}

// The service builds pass-through Responses itself (not c.json), so the typed-response check is
// bypassed with `as never`; the schemas above still document what they carry.
export function registerInvokeRoutes(app: App) {
  app.openapi(
    jsonRoute,
    async (c) => (await handle(c, c.req.valid("param").agentId, c.req.valid("json"), false)) as never,
  );
  app.openapi(
    streamRoute,
    async (c) => (await handle(c, c.req.valid("param").agentId, c.req.valid("json"), true)) as never,
  );
}
