// The bench's worker: the gateway exactly as src/index.ts wires it, plus the /__bench routes
// (./local-routes.ts) and a D1 binding that counts statements (./statement-counter.ts). Only
// scripts/bench.mjs runs it (`wrangler dev src/bench/entry.ts`, with wrangler.toml's local
// bindings); wrangler.toml's `main` is src/index.ts, so no deployed bundle contains this code.
import type { Env } from "../env";
import gateway, { TelemetrySink as GatewayTelemetrySink } from "../index";
import { benchFetch } from "./local-routes";
import { countingD1 } from "./statement-counter";

// Everything the gateway exports. The loader gives user scripts `ctx.exports.TelemetrySink` as
// their TELEMETRY binding, and ctx.exports is this module's: the class below (a local export
// wins over the star) is the gateway's, with its statements counted like every other path's.
export * from "../index";

export class TelemetrySink extends GatewayTelemetrySink {
  constructor(ctx: ExecutionContext, env: Env) {
    super(ctx, withCountedD1(env));
  }
}

// The gateway's env -> the same env with a counting DB, one per isolate: config and drizzle
// clients are cached per env / binding object, so a fresh copy per request would re-parse them.
const countedEnvs = new WeakMap<Env, Env>();

function withCountedD1(env: Env): Env {
  let counted = countedEnvs.get(env);
  if (!counted) {
    counted = { ...env, DB: countingD1(env.DB) };
    countedEnvs.set(env, counted);
  }
  return counted;
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    // Should this entry ever be deployed, production stays the plain gateway.
    if (env.ENVIRONMENT === "production") return gateway.fetch(request, env, ctx);
    const counted = withCountedD1(env);
    return benchFetch(request, counted, ctx) ?? gateway.fetch(request, counted, ctx);
  },
  queue: (batch: MessageBatch, env: Env, ctx: ExecutionContext) => gateway.queue(batch, withCountedD1(env), ctx),
  scheduled: (controller: ScheduledController, env: Env, ctx: ExecutionContext) =>
    gateway.scheduled(controller, withCountedD1(env), ctx),
} satisfies ExportedHandler<Env>;
