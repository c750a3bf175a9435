// The agent host: a second, small Worker (wrangler.host.toml) that runs agents' code through the
// Worker Loader in its own process, so that code which never yields stalls this process and not
// the gateway (src/runtime/host/provider.ts is the gateway's side; docs/local-isolation.md).
// Local only: production runs agents in a dispatch namespace.
//
// What a loaded agent gets is exactly what the in-process loader gives it (src/runtime/loader.ts
// builds it), except that its TELEMETRY binding, its globalOutbound and its Tail Worker are this
// host's own door entrypoints, made here with the agent's identity as props. Each door forwards
// to the gateway's HostBridge with that identity; the agent never holds a binding to the gateway.
import { WorkerEntrypoint } from "cloudflare:workers";
import {
  type AgentHostApi,
  type HostBridgeApi,
  type HostFailure,
  type HostInvokeTarget,
  toHostFailure,
} from "../runtime/host/protocol";
import { createLoaderRuntime } from "../runtime/loader";
import { hasContent } from "../runtime/traces";
import type { DeploymentBundle, RuntimeLimits } from "../runtime/types";
import type { TelemetryBindingProps } from "../runtime/user-script";

export type HostEnv = {
  LOADER: WorkerLoader;
  /** The gateway's HostBridge entrypoint (wrangler.host.toml). */
  GATEWAY: Service<WorkerEntrypoint> & HostBridgeApi;
};

type HostExports = {
  HostTelemetry(options: { props: TelemetryBindingProps }): Fetcher;
  HostEgress(options: { props: TelemetryBindingProps }): Fetcher;
  HostTail(options: { props: TelemetryBindingProps }): Fetcher;
};

export class AgentHost extends WorkerEntrypoint<HostEnv> implements AgentHostApi {
  private runtime() {
    const doors = this.ctx.exports as unknown as HostExports;
    return createLoaderRuntime(this.env.LOADER, (props) => doors.HostTelemetry({ props }), {
      egress: (props) => doors.HostEgress({ props }),
      tail: (props) => doors.HostTail({ props }),
    });
  }

  async ping(): Promise<"pong"> {
    return "pong";
  }

  async deploy(bundle: DeploymentBundle): Promise<HostFailure | { ok: true }> {
    try {
      await this.runtime().deploy(bundle);
      return { ok: true };
    } catch (err) {
      return toHostFailure(err);
    }
  }

  async invoke(
    target: HostInvokeTarget,
    request: Request,
    limits: RuntimeLimits,
    loadBundle: () => Promise<DeploymentBundle>,
  ): Promise<Response | HostFailure> {
    try {
      return await this.runtime().invoke({ ...target, loadBundle }, request, { limits });
    } catch (err) {
      return toHostFailure(err);
    }
  }
}

/** The agent's TELEMETRY binding: `report()` as on the gateway's TelemetrySink. */
export class HostTelemetry extends WorkerEntrypoint<HostEnv, TelemetryBindingProps> {
  report(input: unknown): Promise<unknown> {
    return this.env.GATEWAY.report(this.ctx.props, input);
  }
}

/** The agent's globalOutbound: every fetch() it makes, to the gateway's Egress door. */
export class HostEgress extends WorkerEntrypoint<HostEnv, TelemetryBindingProps> {
  override fetch(request: Request): Promise<Response> {
    return this.env.GATEWAY.egress(this.ctx.props, request);
  }

  /** Sockets stay blocked, as at the gateway's Egress door. */
  override async connect(socket: Socket): Promise<void> {
    await socket.close();
  }
}

/** The agent's Tail Worker: its console lines and exceptions, to the gateway's LogTail. */
export class HostTail extends WorkerEntrypoint<HostEnv, TelemetryBindingProps> {
  override async tail(events: TraceItem[]): Promise<void> {
    // Most invocations print nothing: those cross no process boundary.
    const worth = events.filter(hasContent);
    if (worth.length > 0) await this.env.GATEWAY.storeLogs(this.ctx.props, worth.map(plainTrace));
  }
}

/**
 * A TraceItem as plain data: RPC cannot serialize the runtime's TraceItem ("does not support
 * serialization"), so the host copies the fields the gateway's log capture reads
 * (CapturedTrace, src/runtime/traces.ts). A log line's message is copied through JSON, as the
 * capture prints it anyway.
 */
export function plainTrace(trace: TraceItem): TraceItem {
  const request =
    trace.event && "request" in trace.event ? (trace.event as TraceItemFetchEventInfo).request : undefined;
  const response =
    trace.event && "response" in trace.event ? (trace.event as TraceItemFetchEventInfo).response : undefined;
  const plain = {
    outcome: trace.outcome,
    truncated: trace.truncated,
    eventTimestamp: trace.eventTimestamp,
    event: request
      ? {
          request: { url: request.url, method: request.method, headers: { ...request.headers } },
          ...(response ? { response: { status: response.status } } : {}),
        }
      : null,
    logs: trace.logs.map((l) => ({ timestamp: l.timestamp, level: l.level, message: jsonSafe(l.message) })),
    exceptions: trace.exceptions.map((e) => ({
      timestamp: e.timestamp,
      name: e.name,
      message: e.message,
      stack: e.stack,
    })),
  };
  return plain as unknown as TraceItem;
}

function jsonSafe(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value) ?? "null");
  } catch {
    return String(value);
  }
}

export default {
  // The watchdog's probe (scripts/lib/agent-host.ts): it answers only while this thread is free.
  fetch(request: Request): Response {
    const path = new URL(request.url).pathname;
    return path === "/healthz" ? new Response("ok") : new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<HostEnv>;
