import type { App } from "../../../app";
import { createWebhook } from "../../../services/webhooks/endpoints";
import { bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { CreateWebhookBody, toWebhookResponse, WebhookWithSecret } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/webhooks",
    operationId: "createWebhook",
    tags: ["webhooks"],
    summary: "Subscribe an endpoint to lifecycle events (the signing secret is in this answer only)",
    request: { body: { required: true, content: { "application/json": { schema: CreateWebhookBody } } } },
    responses: {
      201: { description: "Created", content: { "application/json": { schema: WebhookWithSecret } } },
      ...commonProblems,
      ...bodyProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
      409: problemDoc("You already have the most webhooks allowed (too_many_webhooks)"),
    },
  },
  // The answer holds the secret, which is stored only sealed: no Idempotency-Key record may keep it.
  { scope: "jwt", idempotent: false },
);

export function registerCreateWebhook(app: App) {
  app.openapi(route, async (c) => {
    const { db, keyring, config } = c.var.services;
    const { row, secret } = await createWebhook(
      { db, userId: c.var.userId, keyring, environment: config.environment },
      c.req.valid("json"),
    );
    return c.json({ webhook: toWebhookResponse(row), secret }, 201);
  });
}
