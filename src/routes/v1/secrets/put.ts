import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createDb } from "../../../db/client";
import { putAgentSecret } from "../../../services/secrets/secrets";
import { bearerSecurity, problemResponse, problemResponses } from "../../openapi-shared";
import { SecretParams, SecretSchema, SecretValueBody, toSecretResponse } from "./schemas";

const SecretEnvelope = z.object({ secret: SecretSchema });

const route = createRoute({
  method: "put",
  path: "/v1/agents/{agentId}/secrets/{name}",
  tags: ["secrets"],
  summary: "Create or replace an agent secret (takes effect with the agent's next deploy)",
  security: bearerSecurity,
  request: {
    params: SecretParams,
    body: { required: true, content: { "application/json": { schema: SecretValueBody } } },
  },
  responses: {
    200: { description: "Replaced", content: { "application/json": { schema: SecretEnvelope } } },
    201: { description: "Created", content: { "application/json": { schema: SecretEnvelope } } },
    ...problemResponses,
    409: problemResponse("The agent already holds the maximum number of secrets"),
    413: problemResponse("Body too large"),
  },
});

export function registerPutSecret(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, name } = c.req.valid("param");
    const { value } = c.req.valid("json");
    const secret = await putAgentSecret(
      { db: createDb(c.env.DB), userId: c.get("userId"), keyring: c.get("config").keyring },
      { agentId, name, value },
    );
    return secret.created
      ? c.json({ secret: toSecretResponse(secret) }, 201)
      : c.json({ secret: toSecretResponse(secret) }, 200);
  });
}
