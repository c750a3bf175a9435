// PLACEHOLDER until the telemetry helper's TelemetrySink lands on main (replace this file with
// theirs on merge): the entrypoint user scripts reach over their TELEMETRY binding. It exists here
// only so `ctx.exports.TelemetrySink` resolves for the loader mechanism; it verifies nothing and
// stores nothing.
import { WorkerEntrypoint } from "cloudflare:workers";
import type { Env } from "../env";

export type TelemetrySinkProps = { userId: string; agentId: string; deploymentId: string };

export class TelemetrySink extends WorkerEntrypoint<Env, TelemetrySinkProps> {
  async report(_input: { body: string; signature: string; deploymentId: string }): Promise<{
    accepted: number;
    duplicates: number;
  }> {
    return { accepted: 0, duplicates: 0 };
  }
}
