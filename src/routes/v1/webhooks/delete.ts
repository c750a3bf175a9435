import type { App } from "../../../app";
import { deleteWebhook } from "../../../services/webhooks/endpoints";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { WebhookIdParam } from "./schemas";

const route = userRoute(
  {
    method: "delete",
    path: "/v1/webhooks/{webhookId}",
    operationId: "deleteWebhook",
    tags: ["webhooks"],
    summary: "Delete a webhook and its delivery history; nothing more is sent to it",
    request: { params: WebhookIdParam },
    responses: {
      204: { description: "Deleted" },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
    },
  },
  { scope: "jwt" },
);

export function registerDeleteWebhook(app: App) {
  app.openapi(route, async (c) => {
    const { webhookId } = c.req.valid("param");
    await deleteWebhook({ db: c.var.services.db, userId: c.var.userId }, webhookId);
    return c.body(null, 204);
  });
}
