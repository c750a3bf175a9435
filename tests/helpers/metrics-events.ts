// A gateway measurement of one invocation (metrics_events' shape, src/services/metering/event.ts)
// for tests that feed metering directly; each test states the fields it cares about.
import { newId } from "../../src/lib/ids";
import type { MetricsEvent } from "../../src/services/metering/event";

export function gatewayEvent(userId: string, agentId: string, overrides: Partial<MetricsEvent> = {}): MetricsEvent {
  const id = newId("event");
  return {
    id,
    userId,
    agentId,
    deploymentId: "dep_test",
    source: "gateway",
    dedupeKey: id,
    eventId: id,
    traceId: null,
    runtimeProvider: "cloudflare",
    kind: "invoke",
    ts: Date.now(),
    durationMs: 10,
    status: "ok",
    errorCode: null,
    inputTokens: null,
    outputTokens: null,
    bytesIn: 100,
    bytesOut: 200,
    streaming: false,
    host: null,
    provider: null,
    model: null,
    receivedAt: Date.now(),
    ...overrides,
  };
}
