import type { App } from "../../../app";
import { registerCreateRollout } from "./create";
import { registerEndRollout } from "./end";
import { registerGetRollout } from "./get";
import { registerListRollouts } from "./list";

export function registerRolloutRoutes(app: App) {
  registerCreateRollout(app);
  registerListRollouts(app);
  registerGetRollout(app);
  registerEndRollout(app);
}
