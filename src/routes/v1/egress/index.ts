// GET and PUT /v1/agents/{agentId}/egress: the agent's egress policy (enforced live by the egress door).
import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { getEgressPolicy, putEgressPolicy } from "../../../services/egress/policy";
import { limitsForUser } from "../../../services/usage/user-tier";
import { AgentIdParam, bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { EgressPolicyBody, EgressPolicySchema } from "./schemas";

const Envelope = z.object({ egress: EgressPolicySchema });

const getRoute = userRoute(
  {
    method: "get",
    path: "/v1/agents/{agentId}/egress",
    operationId: "getAgentEgress",
    tags: ["egress"],
    summary: "The agent's egress policy (the default, allowlist with no hosts, until one is set)",
    request: { params: AgentIdParam },
    responses: {
      200: { description: "The policy", content: { "application/json": { schema: Envelope } } },
      ...commonProblems,
    },
  },
  { scope: "agents:read" },
);

const putRoute = userRoute(
  {
    method: "put",
    path: "/v1/agents/{agentId}/egress",
    operationId: "putAgentEgress",
    tags: ["egress"],
    summary: "Set the agent's egress policy (takes effect within seconds, without a redeploy)",
    request: {
      params: AgentIdParam,
      body: { required: true, content: { "application/json": { schema: EgressPolicyBody } } },
    },
    responses: {
      200: { description: "The policy now in force", content: { "application/json": { schema: Envelope } } },
      ...commonProblems,
      ...bodyProblems,
      403: problemDoc("`open` is not available on the caller's tier (plan_limit_exceeded)"),
    },
  },
  { scope: "agents:write", bodyLimit: 32 * 1024 },
);

export function registerEgressRoutes(app: App) {
  app.openapi(getRoute, async (c) => {
    const { agentId } = c.req.valid("param");
    const policy = await getEgressPolicy({ db: c.var.services.db, userId: c.var.userId }, agentId);
    return c.json({ egress: { agentId, ...policy } }, 200);
  });
  app.openapi(putRoute, async (c) => {
    const { agentId } = c.req.valid("param");
    const body = c.req.valid("json");
    const { db, tierLimits, waitUntil } = c.var.services;
    const { tier } = await limitsForUser(db, c.var.userId, tierLimits, { waitUntil });
    const policy = await putEgressPolicy({ db, userId: c.var.userId, tier }, agentId, body);
    return c.json({ egress: { agentId, ...policy } }, 200);
  });
}
