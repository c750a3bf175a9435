import type { App } from "../../../app";
import { registerActivateDeployment } from "./activate";
import { registerDeploy } from "./deploy";
import { registerGetDeployment } from "./get";
import { registerListDeployments } from "./list";

export function registerDeploymentRoutes(app: App) {
  registerDeploy(app);
  registerListDeployments(app);
  registerGetDeployment(app);
  registerActivateDeployment(app);
}
