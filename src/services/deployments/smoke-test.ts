// The opt-in smoke test of a deploy (`smokeTest` in the deploy body): after the runtime accepted
// the new deployment and before the agent's pointer moves, the deploy job invokes it once exactly
// as an invocation would (same path, headers and body shape, the user's tier limits) and compares
// the status. The invocation is metered with kind `smoke_test`: visible in metrics, never billed
// and never counted against the invocation quota.
import type { Db } from "../../db/client";
import type { DeploymentRow } from "../../db/schema";
import { describeError, logWarn } from "../../lib/logger";
import {
  type DeploymentBundle,
  type InvokeTarget,
  RuntimeError,
  type RuntimeProvider,
  type RuntimeProviderName,
} from "../../runtime/types";
import { recordEvents } from "../metering/record-events";
import { measurementEvent } from "../metering/record-invocation";
import { DEFAULT_TIER_LIMITS, type TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";

export type SmokeTest = { request: unknown; expectStatus?: number; timeoutMs?: number };

export const SMOKE_TEST_DEFAULT_STATUS = 200;
export const SMOKE_TEST_DEFAULT_TIMEOUT_MS = 10_000;
/** How much of the agent's answer a failed smoke test quotes in errorMessage. */
export const SMOKE_TEST_QUOTE_BYTES = 500;

const INTERNAL_ORIGIN = "https://agent.webhost.internal";

export type SmokeTestDeps = { db: Db; runtime: RuntimeProvider; tierLimits?: TierLimitsByTier };

/**
 * Runs the deployment's smoke test. Resolves when it passed; throws a non-retryable RuntimeError
 * whose message says what the smoke test got when it failed, and passes retryable runtime errors
 * (the runtime was unavailable) through so the job is retried.
 */
export async function runSmokeTest(
  deps: SmokeTestDeps,
  row: DeploymentRow,
  bundle: DeploymentBundle,
  smoke: SmokeTest,
): Promise<void> {
  const expectStatus = smoke.expectStatus ?? SMOKE_TEST_DEFAULT_STATUS;
  const timeoutMs = smoke.timeoutMs ?? SMOKE_TEST_DEFAULT_TIMEOUT_MS;
  const { limits } = await limitsForUser(deps.db, row.userId, deps.tierLimits ?? DEFAULT_TIER_LIMITS);
  const payload = JSON.stringify(smoke.request);
  const requestId = `smoke_${row.id}`;
  const target: InvokeTarget = {
    deploymentId: row.id,
    runtimeProvider: row.runtimeProvider as RuntimeProviderName,
    userId: row.userId,
    agentId: row.agentId,
    scriptName: row.scriptName,
    loadBundle: async () => bundle,
  };
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(new RuntimeError("timeout", `the smoke test got no answer within ${timeoutMs} ms`, false));
    }, timeoutMs);
  });
  const startedAt = Date.now();
  let failure: string | undefined;
  let bytesOut = 0;
  try {
    const request = new Request(`${INTERNAL_ORIGIN}${row.invokePath}`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", "x-request-id": requestId },
      body: payload,
      signal: abort.signal,
    });
    const answer = await Promise.race([
      (async () => {
        const res = await deps.runtime.invoke(target, request, {
          limits: { cpuMs: limits.cpuMs, subRequests: limits.subRequests },
        });
        const body = new Uint8Array(await res.arrayBuffer());
        return { status: res.status, body };
      })(),
      timedOut,
    ]);
    bytesOut = answer.body.byteLength;
    if (answer.status !== expectStatus) {
      const quoted = new TextDecoder().decode(answer.body.subarray(0, SMOKE_TEST_QUOTE_BYTES));
      failure = `the smoke test expected status ${expectStatus} and got ${answer.status}: ${quoted}`;
    }
  } catch (err) {
    if (err instanceof RuntimeError && err.retryable) throw err;
    if (err instanceof RuntimeError && err.code === "timeout") failure = err.message;
    else
      failure = `the smoke test got an exception: ${err instanceof Error ? err.message : String(err)}`.slice(0, 1000);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    abort.abort();
  }
  await recordEvents(deps.db, [
    measurementEvent({
      requestId,
      userId: row.userId,
      agentId: row.agentId,
      deploymentId: row.id,
      runtimeProvider: row.runtimeProvider,
      startedAt,
      durationMs: Date.now() - startedAt,
      ok: failure === undefined,
      errorCode: failure === undefined ? undefined : "smoke_test_failed",
      bytesIn: payload.length,
      bytesOut,
      streaming: false,
      kind: "smoke_test",
    }),
  ]).catch((err) => logWarn("smoke_test_metering_failed", { deploymentId: row.id, error: describeError(err) }));
  if (failure !== undefined) throw new RuntimeError("load_failed", failure, false);
}

export function parseSmokeTest(json: string | null): SmokeTest | undefined {
  return json ? (JSON.parse(json) as SmokeTest) : undefined;
}
