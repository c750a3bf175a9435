// The TelemetrySink entrypoint: user workers call `env.TELEMETRY.report({ body, signature,
// deploymentId })` over their TELEMETRY binding — a service binding (namespace mode) or a loopback
// binding (loader mode), both carrying the worker's own identity as ctx.props, which the gateway
// set and the worker cannot forge. Same verifier (services/telemetry/verify-report.ts) as the HTTP route.
import { WorkerEntrypoint } from "cloudflare:workers";
import { toApiError } from "../app";
import { composeServices } from "../compose";
import { utf8 } from "../crypto/encoding";
import { type Env, getConfig } from "../env";
import { PROBLEMS } from "../lib/errors";
import { newId } from "../lib/ids";
import { logInfo } from "../lib/logger";
import { ingestTelemetryReport, type TelemetryResult } from "../services/telemetry/ingest";
import { type TelemetryCaller, telemetryProblem } from "../services/telemetry/verify-report";

/** Set by the gateway on the binding it gives a user worker; absent on a binding made without props. */
export type TelemetrySinkProps = Partial<TelemetryCaller>;

export type TelemetryReportInput = { body: string; signature: string; deploymentId: string };

/**
 * A rejected report, as the calling worker sees it: RPC carries an error's message, so the
 * message starts with the problem code and the failed check (`telemetry_rejected[event_time]: …`).
 */
export class TelemetryReportError extends Error {
  override name = "TelemetryReportError";
}

export class TelemetrySink extends WorkerEntrypoint<Env, TelemetrySinkProps> {
  async report(input: TelemetryReportInput): Promise<TelemetryResult> {
    const started = Date.now();
    const requestId = newId("request", started);
    const deploymentId = typeof input?.deploymentId === "string" ? input.deploymentId : undefined;
    let outcome: Record<string, string | number> = {};
    try {
      const caller = callerFromProps(this.ctx.props);
      if (typeof input?.body !== "string") {
        throw telemetryProblem(
          "telemetry_rejected",
          "body_shape",
          "`body` must be the exact JSON text that was signed",
        );
      }
      const { db, keyring, tierLimits, usageQueue, waitUntil } = composeServices(
        this.env,
        this.ctx,
        await getConfig(this.env),
      );
      const result = await ingestTelemetryReport(
        { db, keyring, tierLimits, usageQueue, waitUntil },
        {
          body: utf8.encode(input.body),
          signature: typeof input.signature === "string" ? input.signature : undefined,
          deploymentId,
        },
        caller,
      );
      outcome = { status: 202, accepted: result.accepted };
      return result;
    } catch (err) {
      const problem = toApiError(err, requestId, "rpc:TelemetrySink.report");
      const check = problem.extra?.check;
      outcome = {
        status: PROBLEMS[problem.code].status,
        code: problem.code,
        ...(check ? { check: String(check) } : {}),
      };
      throw new TelemetryReportError(`${problem.code}${check ? `[${check}]` : ""}: ${problem.detail}`);
    } finally {
      logInfo("telemetry_rpc", { requestId, deploymentId, durationMs: Date.now() - started, ...outcome });
    }
  }
}

/**
 * No props (a plain service binding) means no caller identity to check. Props that are present
 * but incomplete fail closed: a binding that claims some identity must claim all of it.
 */
function callerFromProps(props: TelemetrySinkProps | undefined): TelemetryCaller | undefined {
  if (!props || typeof props !== "object") return undefined;
  const { userId, agentId, deploymentId } = props;
  if (userId === undefined && agentId === undefined && deploymentId === undefined) return undefined;
  if (typeof userId !== "string" || typeof agentId !== "string" || typeof deploymentId !== "string") {
    throw telemetryProblem(
      "invalid_telemetry_signature",
      "caller_identity",
      "the TELEMETRY binding's identity is incomplete",
    );
  }
  return { userId, agentId, deploymentId };
}
