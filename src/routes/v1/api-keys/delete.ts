import type { App } from "../../../app";
import { revokeApiKey } from "../../../services/api-keys/api-keys";
import { commonProblems, problemDoc } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { ApiKeyIdParam } from "./schemas";

const route = userRoute(
  {
    method: "delete",
    path: "/v1/api-keys/{keyId}",
    operationId: "revokeApiKey",
    tags: ["api-keys"],
    summary: "Revoke an API key (401 for it at once here, everywhere within 60 s)",
    request: { params: ApiKeyIdParam },
    responses: {
      204: { description: "Revoked" },
      ...commonProblems,
      403: problemDoc("Called with an API key (user_token_required)"),
    },
  },
  { scope: "jwt" },
);

export function registerRevokeApiKey(app: App) {
  app.openapi(route, async (c) => {
    const { keyId } = c.req.valid("param");
    await revokeApiKey({ db: c.var.services.db, userId: c.var.userId }, keyId);
    return c.body(null, 204);
  });
}
