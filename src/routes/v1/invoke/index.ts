export { registerInvokeRoutes } from "./invoke";
