import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { createApiKey } from "../../../services/api-keys/api-keys";
import { bodyProblems, commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { ApiKeySchema, CreateApiKeyBody, toApiKeyResponse } from "./schemas";

const route = userRoute(
  {
    method: "post",
    path: "/v1/api-keys",
    operationId: "createApiKey",
    tags: ["api-keys"],
    summary: "Create an API key (the key is in this answer only; only a user token may create keys)",
    request: { body: { required: true, content: { "application/json": { schema: CreateApiKeyBody } } } },
    responses: {
      201: {
        description: "Created; `key` is shown this once and never again",
        content: {
          "application/json": {
            schema: z.object({ apiKey: ApiKeySchema, key: z.string().openapi({ example: "whk_…" }) }),
          },
        },
      },
      ...commonProblems,
      ...bodyProblems,
      403: problemDoc("Called with an API key (user_token_required), or 50 live keys already"),
    },
  },
  // The answer holds the key, which is stored nowhere: no Idempotency-Key record may keep it.
  { scope: "jwt", idempotent: false },
);

export function registerCreateApiKey(app: App) {
  app.openapi(route, async (c) => {
    const input = c.req.valid("json");
    const { row, key } = await createApiKey({ db: c.var.services.db, userId: c.var.userId }, input);
    return c.json({ apiKey: toApiKeyResponse(row), key }, 201);
  });
}
