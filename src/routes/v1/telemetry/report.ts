// POST /v1/telemetry/report: signed telemetry from runtimes outside Cloudflare. No bearer token:
// the deployment-scoped HMAC signature is the credential. The handler reads the raw bytes itself
// (the signature covers them exactly), so the body is described to OpenAPI but not pre-parsed.
import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { bodyGuard } from "../../../middleware/body-guard";
import {
  TELEMETRY_MAX_BATCH_EVENTS,
  TELEMETRY_MAX_BODY_BYTES,
  TelemetryEventSchema,
} from "../../../services/telemetry/event";
import { ingestTelemetryReport } from "../../../services/telemetry/ingest";
import { documentedResponses, problemDoc } from "../../openapi-shared";

const TELEMETRY_REPORT_PATH = "/v1/telemetry/report";

const ReportResultSchema = z
  .object({
    accepted: z.number().int().openapi({ description: "Events of this report verified and queued for storage" }),
    queued: z.literal(true).openapi({
      description:
        "The events are durably queued, not yet stored: they are stored within seconds, and an event " +
        "already stored (same eventId, else traceId) is then dropped as a duplicate",
    }),
  })
  .openapi("TelemetryReportResult");

const route = createRoute({
  method: "post",
  path: TELEMETRY_REPORT_PATH,
  operationId: "reportTelemetry",
  tags: ["telemetry"],
  summary: "Report signed telemetry events for a deployment",
  description:
    "Authenticated by `X-Telemetry-Signature: v1=<lowercase hex HMAC-SHA256 of the exact body bytes>` under the " +
    "deployment's telemetry secret (the base64url-decoded TELEMETRY_SECRET). The body is one event or " +
    `\`{ "events": [...] }\` with at most ${TELEMETRY_MAX_BATCH_EVENTS} events and ${TELEMETRY_MAX_BODY_BYTES} bytes. ` +
    "The answer (202) means verified and durably queued: the events are stored within seconds, duplicates " +
    "dropped then. Problems carry a `check` field naming the verification step that failed.",
  request: {
    headers: z.object({
      "x-telemetry-signature": z.string().openapi({ example: `v1=${"0".repeat(64)}` }),
      "x-telemetry-deployment-id": z.string().openapi({ example: "dep_01jd0000000000000000000000" }),
    }),
    body: {
      required: true,
      content: {
        "application/json": {
          schema: z.union([
            TelemetryEventSchema,
            z.strictObject({ events: z.array(TelemetryEventSchema).min(1).max(TELEMETRY_MAX_BATCH_EVENTS) }),
          ]),
        },
      },
    },
  },
  responses: documentedResponses(
    {
      202: {
        description: "Verified and queued for storage (duplicates are dropped when stored)",
        content: { "application/json": { schema: ReportResultSchema } },
      },
      400: problemDoc("Malformed JSON or an event that fails a check (schema, identity, time window, batch size)"),
      401: problemDoc("Missing, malformed or non-matching signature, or an unknown deployment"),
      413: problemDoc("Body too large"),
      415: problemDoc("Body is not application/json"),
      429: problemDoc(
        "The deployment's telemetry rate (`rate_limited`, check `rate_limit`) or the user's telemetry events " +
          "for the month (`usage_limit_exceeded`, check `event_quota`) are used up; see Retry-After",
      ),
      503: problemDoc(
        "The queue refused the report (`service_unavailable`, check `enqueue`): nothing was accepted; retry after Retry-After",
      ),
    },
    { idempotent: false },
  ),
});

export function registerTelemetryReport(app: App) {
  // Described, not validated: zod would parse the JSON before the signature is checked.
  app.openAPIRegistry.registerPath(route);
  // Public (no bearer token: the signature is the credential), with its own body limit.
  app.post(TELEMETRY_REPORT_PATH, bodyGuard(TELEMETRY_MAX_BODY_BYTES), async (c) => {
    const body = new Uint8Array(await c.req.arrayBuffer());
    const { db, keyring, tierLimits, usageQueue, waitUntil } = c.var.services;
    const result = await ingestTelemetryReport(
      { db, keyring, tierLimits, usageQueue, waitUntil },
      {
        body,
        signature: c.req.header("x-telemetry-signature"),
        deploymentId: c.req.header("x-telemetry-deployment-id"),
      },
    );
    return c.json(result, 202);
  });
}
