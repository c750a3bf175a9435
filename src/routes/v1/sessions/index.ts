import type { App } from "../../../app";
import { registerCreateSession } from "./create";
import { registerDeleteSession } from "./delete";
import { registerGetSession } from "./get";

export function registerSessionRoutes(app: App) {
  registerCreateSession(app);
  registerGetSession(app);
  registerDeleteSession(app);
}
