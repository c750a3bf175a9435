import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { sendTestEvent } from "../../../services/webhooks/endpoints";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { DeliverySchema, toDeliveryResponse, WebhookIdParam } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/webhooks/{webhookId}/test",
    operationId: "testWebhook",
    tags: ["webhooks"],
    summary: "Queue a signed `webhook.test` event to this endpoint; follow it in its deliveries",
    request: { params: WebhookIdParam },
    responses: {
      202: {
        description: "Queued",
        content: { "application/json": { schema: z.object({ delivery: DeliverySchema }) } },
      },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
      409: problemDoc("The webhook is disabled (webhook_disabled)"),
      429: problemDoc("More than 5 test events a minute to this webhook (rate_limited; Retry-After)"),
    },
  },
  { scope: "jwt" },
);

export function registerTestWebhook(app: App) {
  app.openapi(route, async (c) => {
    const { webhookId } = c.req.valid("param");
    const { db, webhookQueue } = c.var.services;
    const row = await sendTestEvent({ db, userId: c.var.userId, queue: webhookQueue }, webhookId);
    return c.json({ delivery: toDeliveryResponse(row) }, 202);
  });
}
