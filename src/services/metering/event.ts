// The metrics event: one invocation as the gateway measured it (source 'gateway') or as the
// agent reported it in verified telemetry (source 'telemetry'), or one outbound request of an agent
// as the egress door measured it (source 'egress'). This schema is the one place its
// fields are written: the TypeScript type, the usage queue's message check, the writer's column
// list (record-events.ts, against the metrics_events table) and the API's response schema
// (routes/v1/metrics/recent.ts) all come from it; descriptions given here (`.describe`) show in
// the API document. It imports nothing but zod, so the Node-side e2e suite can take its types too.
import { z } from "zod";

const id = z.string().min(1).max(64);
const count = z.number().int().nonnegative();

export const MetricsEventSchema = z.object({
  id,
  userId: id,
  agentId: id,
  deploymentId: id,
  source: z
    .enum(["gateway", "telemetry", "egress"])
    .describe(
      "`gateway`: the gateway's own measurement of an invocation; `telemetry`: reported by the agent; `egress`: one outbound request of the agent, measured by the egress door",
    ),
  /** eventId when given, else traceId: unique within a deployment and source. */
  dedupeKey: z.string().min(1).max(200),
  eventId: z.string().max(200).nullable(),
  traceId: z.string().max(200).nullable(),
  runtimeProvider: z.string().max(32),
  kind: z
    .string()
    .max(32)
    .describe(
      "Gateway events: `invoke` (an invocation of the active deployment), `preview` (a deployment invoked by id through the x-webhost-deployment header; billed like `invoke`) or `smoke_test` (a deploy's smoke test; not billed)",
    ),
  ts: count.describe("Event time, ms since epoch"),
  durationMs: count.nullable(),
  status: z.string().max(16).nullable(),
  errorCode: z.string().max(64).nullable(),
  inputTokens: count.nullable(),
  outputTokens: count.nullable(),
  bytesIn: count.nullable(),
  bytesOut: count.nullable(),
  streaming: z.boolean().nullable(),
  host: z.string().max(253).nullable().describe("Egress events: the destination host"),
  provider: z.string().max(32).nullable().describe("Egress events to a platform model: the provider"),
  model: z.string().max(128).nullable().describe("Egress events to a platform model: the model named"),
  receivedAt: count,
});

export type MetricsEvent = z.infer<typeof MetricsEventSchema>;

/** What a client is shown of an event: the owner is the caller, and the dedupe key is internal. */
export const MetricsEventViewSchema = MetricsEventSchema.omit({ userId: true, dedupeKey: true });

export type MetricsEventView = z.infer<typeof MetricsEventViewSchema>;

type NullableField = { [K in keyof MetricsEvent]-?: null extends MetricsEvent[K] ? K : never }[keyof MetricsEvent];

/** An event's fields; what a source does not measure may be left out and is stored as null. */
export type MetricsEventFields = Omit<MetricsEvent, NullableField> & {
  [K in NullableField]?: MetricsEvent[K] | undefined;
};

/** The event's fields in schema order (also the order of its JSON). */
export const METRICS_EVENT_FIELDS = MetricsEventSchema.keyof().options;

export function metricsEvent(fields: MetricsEventFields): MetricsEvent {
  const event: Record<string, unknown> = {};
  for (const field of METRICS_EVENT_FIELDS) event[field] = fields[field] ?? null;
  return event as MetricsEvent;
}
