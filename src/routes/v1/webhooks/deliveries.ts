import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { cursorParam, decodeCursor, encodeCursor, limitParam } from "../../../lib/pagination";
import { listDeliveries, MAX_DELIVERIES_PAGE } from "../../../services/webhooks/endpoints";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { DeliverySchema, toDeliveryResponse, WebhookIdParam } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/webhooks/{webhookId}/deliveries",
    operationId: "listWebhookDeliveries",
    tags: ["webhooks"],
    summary: "The webhook's deliveries, newest first: status, attempts, the last response code",
    request: {
      params: WebhookIdParam,
      query: z.object({ limit: limitParam(z, 20, MAX_DELIVERIES_PAGE), cursor: cursorParam(z) }),
    },
    responses: {
      200: {
        description: "A page of deliveries",
        content: {
          "application/json": {
            schema: z.object({ deliveries: z.array(DeliverySchema), nextCursor: z.string().nullable() }),
          },
        },
      },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
    },
  },
  { scope: "jwt" },
);

export function registerListWebhookDeliveries(app: App) {
  app.openapi(route, async (c) => {
    const { webhookId } = c.req.valid("param");
    const { limit, cursor } = c.req.valid("query");
    const beforeId = cursor ? decodeCursor(cursor, /^msg_[0-9a-z]{26}$/) : undefined;
    const { rows, hasMore } = await listDeliveries({ db: c.var.services.db, userId: c.var.userId }, webhookId, {
      limit,
      beforeId,
    });
    const last = rows.at(-1);
    return c.json(
      { deliveries: rows.map(toDeliveryResponse), nextCursor: hasMore && last ? encodeCursor(last.id) : null },
      200,
    );
  });
}
