import type { App } from "../../../app";
import { registerDeleteSecret } from "./delete";
import { registerListSecrets } from "./list";
import { registerPutSecret } from "./put";

export function registerSecretRoutes(app: App) {
  registerListSecrets(app);
  registerPutSecret(app);
  registerDeleteSecret(app);
}
