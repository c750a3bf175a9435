import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { getWebhook } from "../../../services/webhooks/endpoints";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { toWebhookResponse, WebhookIdParam, WebhookSchema } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/webhooks/{webhookId}",
    operationId: "getWebhook",
    tags: ["webhooks"],
    summary: "One webhook: its events, status and, when disabled, why",
    request: { params: WebhookIdParam },
    responses: {
      200: {
        description: "The webhook",
        content: { "application/json": { schema: z.object({ webhook: WebhookSchema }) } },
      },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
    },
  },
  { scope: "jwt" },
);

export function registerGetWebhook(app: App) {
  app.openapi(route, async (c) => {
    const { webhookId } = c.req.valid("param");
    const row = await getWebhook({ db: c.var.services.db, userId: c.var.userId }, webhookId);
    return c.json({ webhook: toWebhookResponse(row) }, 200);
  });
}
