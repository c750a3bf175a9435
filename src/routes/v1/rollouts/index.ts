import type { App } from "../../../app";
import { registerCreateRollout } from "./create";
import { registerEndRollout } from "./end";
import { registerGetRollout } from "./get";

export function registerRolloutRoutes(app: App) {
  registerCreateRollout(app);
  registerGetRollout(app);
  registerEndRollout(app);
}
