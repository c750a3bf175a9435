import type { App } from "../../../app";
import { deleteAgentSecret } from "../../../services/secrets/secrets";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";
import { SecretParams } from "./schemas";

const route = userRoute(
  {
    method: "delete",
    path: "/v1/agents/{agentId}/secrets/{name}",
    operationId: "deleteAgentSecret",
    tags: ["secrets"],
    summary: "Delete an agent secret (running deployments keep the snapshot they were deployed with)",
    request: { params: SecretParams },
    responses: {
      204: { description: "Deleted" },
      ...commonProblems,
    },
  },
  { scope: "secrets:write" },
);

export function registerDeleteSecret(app: App) {
  app.openapi(route, async (c) => {
    const { agentId, name } = c.req.valid("param");
    await deleteAgentSecret({ db: c.var.services.db, userId: c.var.userId }, { agentId, name });
    return c.body(null, 204);
  });
}
