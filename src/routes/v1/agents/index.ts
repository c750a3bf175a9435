import type { App } from "../../../app";
import { registerCreateAgent } from "./create";
import { registerDeleteAgent } from "./delete";
import { registerDisableAgent } from "./disable";
import { registerGetAgent } from "./get";
import { registerListAgents } from "./list";
import { registerUpdateAgent } from "./update";

export function registerAgentRoutes(app: App) {
  registerListAgents(app);
  registerCreateAgent(app);
  registerGetAgent(app);
  registerUpdateAgent(app);
  registerDisableAgent(app);
  registerDeleteAgent(app);
}
