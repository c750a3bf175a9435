import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { listApiKeys } from "../../../services/api-keys/api-keys";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { ApiKeySchema, toApiKeyResponse } from "./schemas";

const route = userRoute(
  {
    method: "get",
    path: "/v1/api-keys",
    operationId: "listApiKeys",
    tags: ["api-keys"],
    summary: "List your API keys that are not revoked, newest first (never the key itself)",
    responses: {
      200: {
        description: "Your keys",
        content: { "application/json": { schema: z.object({ apiKeys: z.array(ApiKeySchema) }) } },
      },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
    },
  },
  { scope: "jwt" },
);

export function registerListApiKeys(app: App) {
  app.openapi(route, async (c) => {
    const rows = await listApiKeys({ db: c.var.services.db, userId: c.var.userId });
    return c.json({ apiKeys: rows.map(toApiKeyResponse) }, 200);
  });
}
