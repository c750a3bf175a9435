import type { App } from "../../../app";
import { registerListAudit } from "./list";

export function registerAuditRoutes(app: App) {
  registerListAudit(app);
}
