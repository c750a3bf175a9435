import type { App } from "../../../app";
import { registerCreateApiKey } from "./create";
import { registerRevokeApiKey } from "./delete";
import { registerListApiKeys } from "./list";

export function registerApiKeyRoutes(app: App) {
  registerListApiKeys(app);
  registerCreateApiKey(app);
  registerRevokeApiKey(app);
}
