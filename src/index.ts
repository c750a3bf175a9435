// Wiring only: the HTTP app, the queue consumers, the cron, and the TelemetrySink entrypoint.
import { runScheduled } from "./cron/scheduled";
import type { Env } from "./env";
import { createGatewayApp } from "./routes";

export { TelemetrySink } from "./telemetry/sink";

const app = createGatewayApp();

export default {
  fetch: app.fetch,
  scheduled: runScheduled,
} satisfies ExportedHandler<Env>;
