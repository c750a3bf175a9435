// The gateway's side of the agent host's doors (src/agent-host/index.ts): the host, a separate
// Worker process in DISPATCH_MODE=host, cannot hand an agent the gateway's own entrypoints, so
// its doors call here with the identity the host gave the agent, and this calls the same doors an
// in-process agent would get (TelemetrySink, Egress, LogTail with that identity as props).
// Trust: only platform code holds a binding to this entrypoint (the host's GATEWAY binding in
// wrangler.host.toml); it has no HTTP route, and agents only ever hold the host's doors.
import { WorkerEntrypoint } from "cloudflare:workers";
import type { Env } from "../env";
import type { HostBridgeApi } from "../runtime/host/protocol";
import type { TelemetryBindingProps } from "../runtime/user-script";
import { storeTraces } from "./log-tail";
import type { TelemetryReportInput } from "./telemetry-sink";

/** The identity fields, and nothing else, so the doors' own checks see exactly what the host set. */
function identity(props: TelemetryBindingProps): TelemetryBindingProps {
  return { userId: props?.userId, agentId: props?.agentId, deploymentId: props?.deploymentId };
}

export class HostBridge extends WorkerEntrypoint<Env> implements HostBridgeApi {
  async report(props: TelemetryBindingProps, input: unknown): Promise<unknown> {
    this.refuseInProduction();
    return this.ctx.exports.TelemetrySink({ props: identity(props) }).report(input as TelemetryReportInput);
  }

  async egress(props: TelemetryBindingProps, request: Request): Promise<Response> {
    this.refuseInProduction();
    return this.ctx.exports.Egress({ props: identity(props) }).fetch(request);
  }

  async storeLogs(props: TelemetryBindingProps, events: TraceItem[]): Promise<void> {
    this.refuseInProduction();
    return storeTraces(events, this.env, this.ctx, identity(props));
  }

  /**
   * The entrypoint is exported by every build, and in production another Worker of the account
   * could bind it: there, where no agent host exists, it takes no identity from anyone.
   */
  private refuseInProduction(): void {
    if (this.env.ENVIRONMENT === "production") {
      throw new Error("HostBridge is closed in production (the agent host is a local mechanism)");
    }
  }
}
