// Wiring only: the HTTP app, the queue consumers, the cron, and the TelemetrySink and Egress entrypoints.
import { handleScheduled } from "./cron/scheduled";
import type { Env } from "./env";
import { handleQueue } from "./queues";
import { createGatewayApp } from "./routes";

export { Egress } from "./entrypoints/egress";
export { TelemetrySink } from "./entrypoints/telemetry-sink";

const app = createGatewayApp();

export default {
  fetch: app.fetch,
  queue: handleQueue,
  scheduled: handleScheduled,
} satisfies ExportedHandler<Env>;
