// The one telemetry verifier behind both doors: the TelemetrySink RPC entrypoint (user workers'
// TELEMETRY binding) and POST /v1/telemetry/report (runtimes outside Cloudflare). In order:
// headers present and well-formed → caller identity (ctx.props) → deployment key → constant-time
// HMAC over the exact bytes → JSON → shape and batch size → each event's schema → identity
// against the deployment row → time window. What passes is queued for storage by ingest.ts.
//
// Every rejection is a problem whose `check` names the step that failed. An unknown deployment id
// answers exactly like a wrong signature (401 `signature_mismatch`, after a dummy HMAC check of
// the same cost), so the route is no oracle for which deployment ids exist.
import { importHmacVerifyKey, verifyHmacHex } from "../../crypto/hmac";
import type { Keyring } from "../../crypto/keys";
import type { Db } from "../../db/client";
import { ApiError, type FieldError, type ProblemCode } from "../../lib/errors";
import { deploymentTelemetryKey } from "./deployment-keys";
import {
  TELEMETRY_MAX_AGE_MS,
  TELEMETRY_MAX_BATCH_EVENTS,
  TELEMETRY_MAX_BODY_BYTES,
  TELEMETRY_MAX_FUTURE_SKEW_MS,
  type TelemetryEvent,
  TelemetryEventSchema,
} from "./event";

/** Which verification step refused a report (the problem's `check` field). */
export type TelemetryCheck =
  | "signature_missing"
  | "deployment_id_missing"
  | "signature_format"
  | "signature_mismatch"
  | "caller_identity"
  | "body_size"
  | "json"
  | "body_shape"
  | "batch_size"
  | "event_schema"
  | "deployment_mismatch"
  | "identity_mismatch"
  | "event_time"
  | "rate_limit"
  | "event_quota"
  | "enqueue";

export type TelemetryReport = {
  /** The exact bytes that were signed. */
  body: Uint8Array;
  /** `v1=<64 lowercase hex>`; undefined when the caller sent none. */
  signature: string | undefined;
  /** The deployment whose secret signed the body; undefined when the caller sent none. */
  deploymentId: string | undefined;
};

/** The identity the gateway bound to a user worker's TELEMETRY binding (ctx.props). */
export type TelemetryCaller = { userId: string; agentId: string; deploymentId: string };

export function telemetryProblem(
  code: ProblemCode,
  check: TelemetryCheck,
  detail: string,
  errors?: FieldError[],
  opts: { headers?: Record<string, string>; extra?: Record<string, unknown> } = {},
): ApiError {
  return new ApiError(code, detail, { extra: { check, ...opts.extra }, errors, headers: opts.headers });
}

const rejected = (check: TelemetryCheck, detail: string, errors?: FieldError[]) =>
  telemetryProblem("telemetry_rejected", check, detail, errors);
const unauthenticated = (check: TelemetryCheck, detail: string) =>
  telemetryProblem("invalid_telemetry_signature", check, detail);

const SIGNATURE_PATTERN = /^v1=([0-9a-f]{64})$/;

/** A report that passed every check: its events and the deployment that signed them. */
export type VerifiedTelemetryReport = {
  deployment: { deploymentId: string; userId: string; agentId: string };
  events: TelemetryEvent[];
};

/** Runs every check of the report, in the order above; throws the first failure as a problem. */
export async function verifyTelemetryReport(
  deps: { db: Db; keyring: Keyring; now?: number },
  report: TelemetryReport,
  caller?: TelemetryCaller,
): Promise<VerifiedTelemetryReport> {
  const now = deps.now ?? Date.now();
  if (report.body.byteLength > TELEMETRY_MAX_BODY_BYTES) {
    throw telemetryProblem(
      "payload_too_large",
      "body_size",
      `a telemetry report may be at most ${TELEMETRY_MAX_BODY_BYTES} bytes`,
    );
  }
  if (!report.signature) {
    throw unauthenticated("signature_missing", "send the signature as `X-Telemetry-Signature: v1=<hex>`");
  }
  if (!report.deploymentId) {
    throw unauthenticated("deployment_id_missing", "send the deployment id as `X-Telemetry-Deployment-Id`");
  }
  const signatureHex = SIGNATURE_PATTERN.exec(report.signature)?.[1];
  if (!signatureHex) {
    throw unauthenticated(
      "signature_format",
      "the signature must be `v1=` followed by 64 lowercase hex characters (HMAC-SHA256)",
    );
  }
  const deploymentId = report.deploymentId;
  if (caller && caller.deploymentId !== deploymentId) {
    throw unauthenticated("caller_identity", "this TELEMETRY binding may only report for its own deployment");
  }

  const found = await deploymentTelemetryKey(deps, deploymentId);
  const valid = await verifyHmacHex(found?.key ?? (await dummyKey()), report.body, signatureHex);
  if (!found || !valid) {
    throw unauthenticated(
      "signature_mismatch",
      "the signature does not match the body under the telemetry secret of the named deployment",
    );
  }
  if (caller && (caller.userId !== found.userId || caller.agentId !== found.agentId)) {
    throw unauthenticated("caller_identity", "this TELEMETRY binding may only report for its own deployment");
  }

  const { events, batch } = parseEvents(report.body);
  for (const [i, event] of events.entries()) {
    const at = batch ? `body.events.${i}` : "body";
    if (event.deploymentId !== deploymentId) {
      throw rejected("deployment_mismatch", "the event names another deployment than X-Telemetry-Deployment-Id", [
        { location: `${at}.deploymentId`, message: "does not match X-Telemetry-Deployment-Id" },
      ]);
    }
    const mismatched: FieldError[] = [];
    if (event.userId !== found.userId) mismatched.push({ location: `${at}.userId`, message: "not this deployment's" });
    if (event.agentId !== found.agentId) {
      mismatched.push({ location: `${at}.agentId`, message: "not this deployment's" });
    }
    // The runtime that ran the deployment is the deployment's, not the reporter's to choose.
    if (event.runtimeProvider !== found.runtimeProvider) {
      mismatched.push({ location: `${at}.runtimeProvider`, message: "not this deployment's" });
    }
    if (mismatched.length > 0) {
      throw rejected(
        "identity_mismatch",
        "the event's userId/agentId/runtimeProvider are not those of the deployment",
        mismatched,
      );
    }
    if (event.ts < now - TELEMETRY_MAX_AGE_MS || event.ts > now + TELEMETRY_MAX_FUTURE_SKEW_MS) {
      throw rejected(
        "event_time",
        `event time must be within ${TELEMETRY_MAX_AGE_MS / 3_600_000} h before and ${TELEMETRY_MAX_FUTURE_SKEW_MS / 60_000} min after the server's clock`,
        [{ location: `${at}.ts`, message: "outside the accepted time window" }],
      );
    }
  }

  return { deployment: found, events };
}

/** A batch is recognised by its `events` key; anything else must be a single event. */
function parseEvents(body: Uint8Array): { events: TelemetryEvent[]; batch: boolean } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(body));
  } catch {
    throw telemetryProblem("malformed_json", "json", "the body is not valid UTF-8 JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw rejected("body_shape", 'the body must be one event object or `{ "events": [ … ] }`');
  }
  const batch = "events" in parsed;
  let raw: unknown[];
  if (batch) {
    const keys = Object.keys(parsed);
    const list = (parsed as { events: unknown }).events;
    if (keys.length !== 1 || !Array.isArray(list)) {
      throw rejected("body_shape", 'a batch must be exactly `{ "events": [ … ] }`');
    }
    if (list.length === 0) throw rejected("batch_size", "a batch must hold at least one event");
    if (list.length > TELEMETRY_MAX_BATCH_EVENTS) {
      throw rejected(
        "batch_size",
        `a batch may hold at most ${TELEMETRY_MAX_BATCH_EVENTS} events (got ${list.length}); split it`,
      );
    }
    raw = list;
  } else {
    raw = [parsed];
  }

  const events: TelemetryEvent[] = [];
  const errors: FieldError[] = [];
  for (const [i, item] of raw.entries()) {
    const result = TelemetryEventSchema.safeParse(item);
    if (result.success) {
      events.push(result.data);
      continue;
    }
    const base = batch ? `body.events.${i}` : "body";
    for (const issue of result.error.issues) {
      const at = [base, ...issue.path.map(String)].join(".");
      if (issue.code === "unrecognized_keys") {
        for (const key of issue.keys) errors.push({ location: `${at}.${key}`, message: "unknown field" });
      } else {
        errors.push({ location: at, message: issue.message });
      }
    }
  }
  if (errors.length > 0) {
    throw rejected(
      "event_schema",
      `${errors.length} field(s) of the telemetry event(s) are invalid`,
      errors.slice(0, 20),
    );
  }
  return { events, batch };
}

// Verified against when the deployment is unknown, so that case costs what a wrong signature costs.
let dummy: Promise<CryptoKey> | undefined;
function dummyKey(): Promise<CryptoKey> {
  dummy ??= importHmacVerifyKey(crypto.getRandomValues(new Uint8Array(32)));
  return dummy;
}
