import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { putAgentSecret } from "../../../services/secrets/secrets";
import { bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { SecretParams, SecretSchema, SecretValueBody, toSecretResponse } from "./schemas";

const SecretEnvelope = z.object({ secret: SecretSchema });

const route = userRoute(
  {
    method: "put",
    path: "/v1/agents/{agentId}/secrets/{name}",
    operationId: "putAgentSecret",
    tags: ["secrets"],
    summary: "Create or replace an agent secret (takes effect with the agent's next deploy)",
    request: {
      params: SecretParams,
      body: { required: true, content: { "application/json": { schema: SecretValueBody } } },
    },
    responses: {
      200: { description: "Replaced", content: { "application/json": { schema: SecretEnvelope } } },
      201: { description: "Created", content: { "application/json": { schema: SecretEnvelope } } },
      ...commonProblems,
      ...bodyProblems,
      409: problemDoc("The agent already holds the maximum number of secrets"),
    },
  },
  { scope: "secrets:write" },
);

export function registerPutSecret(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, name } = c.req.valid("param");
    const { value } = c.req.valid("json");
    const secret = await putAgentSecret(
      { db: c.var.services.db, userId: c.var.userId, keyring: c.var.services.keyring },
      { agentId, name, value },
    );
    return secret.created
      ? c.json({ secret: toSecretResponse(secret) }, 201)
      : c.json({ secret: toSecretResponse(secret) }, 200);
  });
}
