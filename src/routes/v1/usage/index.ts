import type { App } from "../../../app";
import { registerCurrentUsage } from "./current";
import { registerPeriodUsage } from "./period";

export function registerUsageRoutes(app: App) {
  registerCurrentUsage(app);
  registerPeriodUsage(app);
}
