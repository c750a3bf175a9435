import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { listWebhooks } from "../../../services/webhooks/endpoints";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { toWebhookResponse, WebhookSchema } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/webhooks",
    operationId: "listWebhooks",
    tags: ["webhooks"],
    summary: "Your webhooks, newest first (never their secrets)",
    responses: {
      200: {
        description: "Your webhooks",
        content: { "application/json": { schema: z.object({ webhooks: z.array(WebhookSchema) }) } },
      },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
    },
  },
  { scope: "jwt" },
);

export function registerListWebhooks(app: App) {
  app.openapi(route, async (c) => {
    const rows = await listWebhooks({ db: c.var.services.db, userId: c.var.userId });
    return c.json({ webhooks: rows.map(toWebhookResponse) }, 200);
  });
}
