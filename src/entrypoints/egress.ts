// The egress door's two doors in: the `Egress` entrypoint, handed to each loaded agent as its
// globalOutbound (loader mode: `ctx.exports.Egress({ props })`, identity in ctx.props), and
// `handleOutboundWorkerFetch`, the fetch handler of the dispatch namespace's outbound Worker
// (namespace mode: src/outbound.ts, identity in the outbound parameter EGRESS_OUTBOUND_PARAMETER). Both run
// services/egress/door.ts; the identity comes from the runtime, never from the agent.
import { WorkerEntrypoint } from "cloudflare:workers";
import type { EntryContext } from "../compose";
import { createDb } from "../db/client";
import { type Env, getEgressConfig } from "../env";
import { ConfigError } from "../lib/config-error";
import { ApiError, problemResponse } from "../lib/errors";
import { newId } from "../lib/ids";
import { describeError, logError } from "../lib/logger";
import { EGRESS_OUTBOUND_PARAMETER } from "../runtime/user-script";
import { type EgressCaller, handleEgress } from "../services/egress/door";
import { recordMetricsEvent } from "../services/metering/record-invocation";

/** Set by the gateway on the binding it gives a loaded agent. */
export type EgressProps = { userId: string; agentId: string; deploymentId: string };

function callerOf(value: unknown): EgressCaller | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { userId, agentId, deploymentId, invocationId } = value as Record<string, unknown>;
  if (typeof userId !== "string" || typeof agentId !== "string" || typeof deploymentId !== "string") return undefined;
  return { userId, agentId, deploymentId, ...(typeof invocationId === "string" ? { invocationId } : {}) };
}

async function egress(env: Env, ctx: EntryContext, identity: unknown, request: Request): Promise<Response> {
  const caller = callerOf(identity);
  try {
    if (!caller) {
      // Fail closed: a door without an identity lets nothing out.
      throw new ApiError("egress_denied", "the egress door was reached without an agent identity");
    }
    const config = getEgressConfig(env);
    const db = createDb(env.DB);
    const secrets = env as unknown as Record<string, unknown>;
    return await handleEgress(
      {
        db,
        tierLimits: config.tierLimits,
        environment: config.environment,
        providers: config.providers,
        secret: (name) => (typeof secrets[name] === "string" ? (secrets[name] as string) : undefined),
        fetch: (req) => fetch(req),
        timeoutMs: config.timeoutMs,
        record: (event) => ctx.waitUntil(recordMetricsEvent({ db, usageQueue: env.USAGE_QUEUE }, event)),
        waitUntil: (promise) => ctx.waitUntil(promise),
      },
      caller,
      request,
    );
  } catch (err) {
    const requestId = newId("request");
    return problemResponse(egressProblem(err, requestId), requestId);
  }
}

/** The door's own failures, as the agent's fetch sees them (no Hono here: the outbound Worker stays small). */
function egressProblem(err: unknown, requestId: string): ApiError {
  if (err instanceof ApiError) return err;
  logError(err instanceof ConfigError ? "configuration_error" : "egress_error", {
    requestId,
    error: describeError(err),
  });
  if (err instanceof ConfigError) {
    return new ApiError("configuration_error", "the platform's egress is misconfigured; it is not the agent's fault");
  }
  return new ApiError("service_unavailable", "the platform's egress failed; retry shortly");
}

export class Egress extends WorkerEntrypoint<Env, EgressProps> {
  override fetch(request: Request): Promise<Response> {
    return egress(this.env, this.ctx, this.ctx.props, request);
  }

  /** Sockets (`connect()` from cloudflare:sockets) stay blocked: the door only speaks HTTP. */
  override async connect(socket: Socket): Promise<void> {
    await socket.close();
  }
}

/** The outbound Worker's fetch: Workers for Platforms exposes each outbound parameter as an env value. */
export function handleOutboundWorkerFetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  const identity = (env as unknown as Record<string, unknown>)[EGRESS_OUTBOUND_PARAMETER];
  return egress(env, ctx, identity, request);
}
