import type { App } from "../../../app";
import { registerCancelRun } from "./cancel";
import { registerStartRun } from "./create";
import { registerRunEvents } from "./events";
import { registerGetRun } from "./get";
import { registerWaitForRun } from "./wait";

export function registerRunRoutes(app: App) {
  registerStartRun(app);
  registerGetRun(app);
  registerRunEvents(app);
  registerCancelRun(app);
  registerWaitForRun(app);
}
