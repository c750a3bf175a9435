// Wiring only: the HTTP app, the queue consumers, the cron, and the TelemetrySink entrypoint.
import type { Env } from "./env";
import { createGatewayApp } from "./routes";

export { TelemetrySink } from "./telemetry/sink";

const app = createGatewayApp();

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
