// Wiring only: the HTTP app, the queue consumers, the cron, the tail handler (agents' logs), the
// TelemetrySink, Egress, LogTail and HostBridge (the agent host's way back in) entrypoints and the RunRecorder, SessionKeeper and AgentLogs
// Durable Objects.
import { handleScheduled } from "./cron/scheduled";
import { handleTail } from "./entrypoints/log-tail";
import type { Env } from "./env";
import { handleQueue } from "./queues";
import { createGatewayApp } from "./routes";

export { AgentLogs } from "./entrypoints/agent-logs";
export { Egress } from "./entrypoints/egress";
export { HostBridge } from "./entrypoints/host-bridge";
export { LogTail } from "./entrypoints/log-tail";
export { RunRecorder } from "./entrypoints/run-recorder";
export { SessionKeeper } from "./entrypoints/session-keeper";
export { TelemetrySink } from "./entrypoints/telemetry-sink";

const app = createGatewayApp();

export default {
  fetch: app.fetch,
  queue: handleQueue,
  scheduled: handleScheduled,
  tail: handleTail,
} satisfies ExportedHandler<Env>;
