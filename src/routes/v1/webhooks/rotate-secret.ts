import type { App } from "../../../app";
import { rotateWebhookSecret } from "../../../services/webhooks/endpoints";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { toWebhookResponse, WebhookIdParam, WebhookWithSecret } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/webhooks/{webhookId}/rotate-secret",
    operationId: "rotateWebhookSecret",
    tags: ["webhooks"],
    summary: "A new signing secret (in this answer only); the previous one keeps signing for 24 h",
    request: { params: WebhookIdParam },
    responses: {
      200: { description: "Rotated", content: { "application/json": { schema: WebhookWithSecret } } },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
      409: problemDoc("Rotated by another request at the same time (conflict)"),
    },
  },
  // The answer holds the new secret: no Idempotency-Key record may keep it.
  { scope: "jwt", idempotent: false },
);

export function registerRotateWebhookSecret(app: App) {
  app.openapi(route, async (c) => {
    const { webhookId } = c.req.valid("param");
    const { db, keyring, config } = c.var.services;
    const { row, secret } = await rotateWebhookSecret(
      { db, userId: c.var.userId, keyring, environment: config.environment },
      webhookId,
    );
    return c.json({ webhook: toWebhookResponse(row), secret }, 200);
  });
}
