// Wiring only: the HTTP app, the queue consumers, the cron, the TelemetrySink and Egress
// entrypoints and the RunRecorder and SessionKeeper Durable Objects.
import { handleScheduled } from "./cron/scheduled";
import type { Env } from "./env";
import { handleQueue } from "./queues";
import { createGatewayApp } from "./routes";

export { Egress } from "./entrypoints/egress";
export { RunRecorder } from "./entrypoints/run-recorder";
export { SessionKeeper } from "./entrypoints/session-keeper";
export { TelemetrySink } from "./entrypoints/telemetry-sink";

const app = createGatewayApp();

export default {
  fetch: app.fetch,
  queue: handleQueue,
  scheduled: handleScheduled,
} satisfies ExportedHandler<Env>;
