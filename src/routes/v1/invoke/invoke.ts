import { z } from "@hono/zod-openapi";
import type { App, AppContext } from "../../../app";
import { ApiError } from "../../../lib/errors";
import type { BodyLimit } from "../../../middleware/body-guard";
import { invokeAgent } from "../../../services/invoke/invoke";
import { type InvokeDeps, PREVIEW_DEPLOYMENT_HEADER } from "../../../services/invoke/prepare";
import { streamAgentRun } from "../../../services/runs/start";
import { limitsForUser } from "../../../services/usage/user-tier";
import { bodyProblems, commonProblems, headers, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { InvokeParams, InvokeRequestSchema, InvokeResponseSchema, InvokeStreamEventSchema } from "./schemas";

/** The caller's own tier limit on invoke bodies (`invokeBodyBytes`), checked after authentication. */
export const callerInvokeBodyLimit: BodyLimit = async (c) => {
  const { db, tierLimits, waitUntil } = c.var.services;
  const { tier, limits } = await limitsForUser(db, c.var.userId, tierLimits, { waitUntil });
  const maxBytes = limits.invokeBodyBytes;
  return {
    maxBytes,
    tooLarge: () =>
      new ApiError("payload_too_large", `the ${tier} plan allows invoke bodies of ${maxBytes} bytes`, {
        extra: { limit: "invokeBodyBytes", tier, limitBytes: maxBytes },
      }),
  };
};

/** What an answer from (or about) the agent carries: which deployment was called, and the quota left. */
const answerHeaders = headers("DeploymentId", "RateLimit", "RateLimitPolicy");

/** The optional preview header: invoke this deployment of the agent instead of the active one. */
const PreviewHeaders = z.object({
  [PREVIEW_DEPLOYMENT_HEADER]: z.string().optional().openapi({
    description:
      "Preview: invoke this deployment of the agent (`ready`, `active` or `inactive`) instead of the active one; metered as kind `preview`, billed like any invocation. Not a deployment of this agent: 404; deploying, failed or its code removed: 409 deployment_not_invocable",
    example: "dep_01jd0000000000000000000000",
  }),
});

export const upstreamProblems = {
  429: {
    ...problemDoc("The plan's invocations for this period are used up (usage_limit_exceeded, Retry-After)"),
    headers: headers("RateLimit", "RateLimitPolicy"),
  },
  409: problemDoc(
    "The agent is disabled or has no active deployment; with a sessionId: another turn of the session is running (session_busy, Retry-After) or its pinned deployment can no longer run (session_deployment_gone)",
  ),
  502: {
    ...problemDoc("The agent failed: it threw, answered an error status, or answered something that is not invoke/v1"),
    headers: answerHeaders,
  },
  504: { ...problemDoc("The agent did not answer in time"), headers: answerHeaders },
};

const jsonRoute = userRoute(
  {
    method: "post",
    path: "/v1/invoke/{agentId}",
    operationId: "invokeAgent",
    tags: ["invoke"],
    summary: "Invoke an agent's active deployment (invoke/v1, JSON)",
    request: {
      params: InvokeParams,
      headers: PreviewHeaders,
      body: { required: true, content: { "application/json": { schema: InvokeRequestSchema } } },
    },
    responses: {
      200: {
        description: "The agent's answer, passed through (header x-deployment-id names the deployment that answered)",
        headers: answerHeaders,
        content: { "application/json": { schema: InvokeResponseSchema } },
      },
      ...commonProblems,
      ...bodyProblems,
      ...upstreamProblems,
    },
  },
  { bodyLimit: callerInvokeBodyLimit, scope: "invoke" },
);

const streamRoute = userRoute(
  {
    method: "post",
    path: "/v1/invoke/{agentId}/stream",
    operationId: "invokeAgentStream",
    tags: ["invoke"],
    summary:
      "Invoke an agent as a run and stream its answer as server-sent events (delta…, then done or error; every event has an id)",
    request: {
      params: InvokeParams,
      headers: PreviewHeaders,
      body: { required: true, content: { "application/json": { schema: InvokeRequestSchema } } },
    },
    responses: {
      200: {
        description:
          "text/event-stream: `delta` events ({ text }), then `done` (the full invoke/v1 response) or `error` ({ code, message }); each event carries `id: <n>` (1, 2, 3, … within the run); header x-run-id names the run (GET /v1/runs/{runId}/events resumes it)",
        headers: { ...answerHeaders, ...headers("RunId") },
        content: {
          "text/event-stream": {
            // The body is a stream of text; each event in it is an InvokeStreamEvent.
            schema: { type: "string" },
            "x-itemSchema": { $ref: "#/components/schemas/InvokeStreamEvent" },
          },
        },
      },
      ...commonProblems,
      ...bodyProblems,
      ...upstreamProblems,
    },
  },
  { bodyLimit: callerInvokeBodyLimit, scope: "invoke" },
);

/** The invoke service's dependencies for this request (shared with the background-run route). */
export function invokeDeps(c: AppContext): InvokeDeps {
  const services = c.var.services;
  return {
    db: services.db,
    usageQueue: services.usageQueue,
    userId: c.var.userId,
    keyring: services.keyring,
    tierLimits: services.tierLimits,
    runtime: services.runtime,
    artifacts: services.artifacts,
    requestId: c.var.requestId,
    timeoutMs: services.config.invokeTimeoutMs,
    waitUntil: services.waitUntil,
    runs: services.runs,
    sessions: services.sessions,
  };
}

// The service builds pass-through Responses itself (not c.json), so the typed-response check is
// bypassed with `as never`; the schemas above still document what they carry.
export function registerInvokeRoutes(app: App) {
  app.openAPIRegistry.register("InvokeStreamEvent", InvokeStreamEventSchema);
  app.openapi(
    jsonRoute,
    async (c) =>
      (await invokeAgent(invokeDeps(c), c.req.valid("param").agentId, c.req.valid("json"), {
        previewDeploymentId: c.req.valid("header")[PREVIEW_DEPLOYMENT_HEADER],
      })) as never,
  );
  app.openapi(
    streamRoute,
    async (c) =>
      (await streamAgentRun(invokeDeps(c), c.req.valid("param").agentId, c.req.valid("json"), {
        previewDeploymentId: c.req.valid("header")[PREVIEW_DEPLOYMENT_HEADER],
      })) as never,
  );
}
