// The telemetry event a user worker reports (docs/telemetry.md, "Body") and the limits of a
// report. One schema validates both doors (the TelemetrySink RPC and POST /v1/telemetry/report).
import { z } from "zod";
import { RUNTIME_PROVIDERS } from "../../runtime/types";

/** Largest report body, in bytes of the exact signed text. */
export const TELEMETRY_MAX_BODY_BYTES = 64 * 1024;
/** Most events in one `{ events: [...] }` report. */
export const TELEMETRY_MAX_BATCH_EVENTS = 100;
/** An event's `ts` may be at most this far in the past (late delivery, buffering runtimes)… */
export const TELEMETRY_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** …and at most this far in the future (clock skew). */
export const TELEMETRY_MAX_FUTURE_SKEW_MS = 5 * 60 * 1000;

// Visible ASCII only: ids end up in dedupe keys, logs and dashboards.
const opaqueId = z
  .string()
  .min(1, "must not be empty")
  .max(128, "must be at most 128 characters")
  .regex(/^[\x21-\x7e]+$/, "must be visible ASCII characters");

/** Most tokens one event may report (input and output each): far above any model's context. */
export const TELEMETRY_MAX_TOKENS = 10_000_000;
/** Longest invocation one event may report: a day (a stream is held open at most that long). */
export const TELEMETRY_MAX_DURATION_MS = 24 * 60 * 60 * 1000;

const count = (max: number, unit: string) =>
  z
    .number()
    .int("must be an integer")
    .min(0, "must not be negative")
    .max(max, `must be at most ${max.toLocaleString("en-US")} ${unit}`);
const tokens = count(TELEMETRY_MAX_TOKENS, "tokens per event");

export const TelemetryEventSchema = z
  .strictObject({
    eventId: opaqueId.optional(),
    traceId: opaqueId.optional(),
    userId: z.string().min(1).max(64),
    agentId: z.string().min(1).max(64),
    deploymentId: z.string().min(1).max(64),
    runtimeProvider: z.enum(RUNTIME_PROVIDERS),
    kind: z.literal("invoke"),
    ts: z.number().int("must be an integer (ms since epoch)").min(0).max(Number.MAX_SAFE_INTEGER),
    durationMs: count(TELEMETRY_MAX_DURATION_MS, "ms (24 h)").optional(),
    status: z.enum(["ok", "error"]).optional(),
    usage: z.strictObject({ inputTokens: tokens.optional(), outputTokens: tokens.optional() }).optional(),
    errorCode: z.string().min(1).max(64).optional(),
  })
  .refine((e) => e.eventId !== undefined || e.traceId !== undefined, {
    message: "an event needs an eventId or a traceId (used to drop duplicates)",
    path: ["eventId"],
  });

export type TelemetryEvent = z.infer<typeof TelemetryEventSchema>;

/** The dedupe key within a deployment: eventId when given, else traceId (namespaced so they never collide). */
export function dedupeKeyOf(event: TelemetryEvent): string {
  return event.eventId !== undefined ? `event:${event.eventId}` : `trace:${event.traceId}`;
}
