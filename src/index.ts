// Wiring only: the HTTP app, the queue consumers, the cron, and the TelemetrySink entrypoint.
import { benchFetch } from "./bench/local-routes";
import { handleScheduled } from "./cron/scheduled";
import type { Env } from "./env";
import { handleQueue } from "./queues";
import { createGatewayApp } from "./routes";

export { TelemetrySink } from "./telemetry/sink";

const app = createGatewayApp();

export default {
  // benchFetch answers only on a local bench server (BENCH_BASELINE="1"); otherwise undefined.
  fetch: (request: Request, env: Env, ctx: ExecutionContext) =>
    benchFetch(request, env, ctx) ?? app.fetch(request, env, ctx),
  queue: handleQueue,
  scheduled: handleScheduled,
} satisfies ExportedHandler<Env>;
