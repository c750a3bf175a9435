// Test double for the gateway's TelemetrySink, run as an auxiliary worker by vitest.config.ts and
// bound to tests as FAKE_TELEMETRY. It records every report per deploymentId; a deploymentId
// starting with "fail-" makes report() throw, as a broken sink would.
import { WorkerEntrypoint } from "cloudflare:workers";

const calls = new Map();

export class FakeTelemetry extends WorkerEntrypoint {
  async report(input) {
    const list = calls.get(input.deploymentId) ?? [];
    list.push(input);
    calls.set(input.deploymentId, list);
    if (input.deploymentId.startsWith("fail-")) throw new Error("telemetry sink is down");
    return { accepted: 1, queued: true }; // the real sink's answer (src/services/telemetry/ingest.ts)
  }

  reportsFor(deploymentId) {
    return calls.get(deploymentId) ?? [];
  }
}

export default {
  fetch() {
    return new Response("fake telemetry sink", { status: 404 });
  },
};
