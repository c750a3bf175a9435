// The egress door: every outbound fetch() of an agent comes here, under either runtime (the loaded
// worker's globalOutbound in loader mode, the dispatch namespace's outbound Worker in namespace
// mode). It applies the agent's policy, forwards platform model calls with the platform's key,
// enforces the per-invocation request cap and the per-period token budget, and records one metrics
// event per request (host, status, bytes, duration, tokens). Answers it makes itself are
// problem+json, seen by the agent's fetch (the invocation itself goes on). Never logs a body or a key.
import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { billingUsage } from "../../db/schema";
import { ApiError, problemResponse } from "../../lib/errors";
import { newId } from "../../lib/ids";
import { logInfo } from "../../lib/logger";
import { periodKeyOf } from "../../lib/time";
import { type MetricsEvent, metricsEvent } from "../metering/event";
import type { TierLimitsByTier } from "../usage/tiers";
import { limitsForUser } from "../usage/user-tier";
import { decideEgress, egressPolicyFor, MODELS_HOST, normalizeHost } from "./policy";
import { AUTH_HEADERS, keyHeaders, type ModelProvider } from "./providers";
import { meterBody, type StreamOutcome } from "./usage-meter";

/** Who is calling, as the runtime vouches for it (props or outbound parameters, never the agent). */
export type EgressCaller = {
  userId: string;
  agentId: string;
  deploymentId: string;
  /** The invocation's request id when the runtime passes it (namespace mode). */
  invocationId?: string;
};

export type EgressDeps = {
  db: Db;
  tierLimits: TierLimitsByTier;
  environment: string;
  providers: Record<string, ModelProvider>;
  /** The gateway's secret (or var) of that name. */
  secret: (name: string) => string | undefined;
  /** The upstream fetch (global fetch in production; tests inject a fake provider). */
  fetch: (request: Request) => Promise<Response>;
  /** Per outbound request, until its answer's body has ended. */
  timeoutMs: number;
  /** Records one metrics event off the response path (never throws). */
  record: (event: MetricsEvent) => void;
  waitUntil: (promise: Promise<unknown>) => void;
  runtimeProvider?: string;
};

/** Headers that describe the hop, not the request: never forwarded. */
const HOP_HEADERS = ["connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"];

// Per-invocation request counts (this isolate). Keyed by invocation id; without one (loader mode),
// by deployment and minute. Entries expire after COUNTER_TTL_MS.
const COUNTER_TTL_MS = 15 * 60_000;
const counters = new Map<string, { count: number; expiresAt: number }>();

function countRequest(key: string, now: number): number {
  if (counters.size > 10_000) {
    for (const [k, v] of counters) if (v.expiresAt <= now) counters.delete(k);
    if (counters.size > 10_000) counters.clear();
  }
  const entry = counters.get(key);
  if (!entry || entry.expiresAt <= now) {
    counters.set(key, { count: 1, expiresAt: now + COUNTER_TTL_MS });
    return 1;
  }
  entry.count += 1;
  return entry.count;
}

/** Model tokens the user's agents used this period, as metered so far (trails by the queue's delay). */
export async function modelTokensUsed(db: Db, userId: string, now = Date.now()): Promise<number> {
  const row = await db
    .select({
      used: sql<number>`COALESCE(SUM(${billingUsage.modelInputTokens} + ${billingUsage.modelOutputTokens}), 0)`,
    })
    .from(billingUsage)
    .where(and(eq(billingUsage.userId, userId), eq(billingUsage.periodKey, periodKeyOf(now))))
    .get();
  return row?.used ?? 0;
}

export async function handleEgress(deps: EgressDeps, caller: EgressCaller, request: Request): Promise<Response> {
  const started = Date.now();
  const requestId = newId("request", started);
  const url = new URL(request.url);
  const host = normalizeHost(url.hostname);
  let provider: ModelProvider | undefined;

  const record = (fields: {
    status: number;
    errorCode?: string;
    bytesOut?: number;
    outcome?: Partial<StreamOutcome>;
  }) => {
    const bytesIn = Number(request.headers.get("content-length") ?? "");
    const event = metricsEvent({
      id: newId("event", started),
      userId: caller.userId,
      agentId: caller.agentId,
      deploymentId: caller.deploymentId,
      source: "egress",
      dedupeKey: requestId,
      traceId: caller.invocationId,
      runtimeProvider: deps.runtimeProvider ?? "cloudflare",
      kind: provider ? "model" : "egress",
      ts: started,
      durationMs: Date.now() - started,
      status: String(fields.status),
      errorCode:
        fields.errorCode ?? (fields.outcome?.end && fields.outcome.end !== "ok" ? fields.outcome.end : undefined),
      inputTokens: fields.outcome?.inputTokens,
      outputTokens: fields.outcome?.outputTokens,
      bytesIn: Number.isInteger(bytesIn) && bytesIn >= 0 ? bytesIn : undefined,
      bytesOut: fields.bytesOut ?? fields.outcome?.bytes,
      host: host.slice(0, 253),
      provider: provider?.name,
      model: fields.outcome?.model,
      receivedAt: Date.now(),
    });
    logInfo("egress", {
      requestId,
      agentId: caller.agentId,
      deploymentId: caller.deploymentId,
      ...(caller.invocationId ? { invocationId: caller.invocationId } : {}),
      host,
      ...(provider ? { provider: provider.name } : {}),
      status: fields.status,
      ...(event.errorCode ? { code: event.errorCode } : {}),
      bytesOut: event.bytesOut ?? 0,
      durationMs: event.durationMs ?? 0,
    });
    deps.record(event);
  };

  const refuse = (err: ApiError): Response => {
    record({ status: err.status, errorCode: err.code, bytesOut: 0 });
    return problemResponse(err, requestId);
  };

  const { limits } = await limitsForUser(deps.db, caller.userId, deps.tierLimits, { waitUntil: deps.waitUntil });
  const counterKey = caller.invocationId
    ? `${caller.deploymentId}:${caller.invocationId}`
    : `${caller.deploymentId}:minute:${Math.floor(started / 60_000)}`;
  if (countRequest(counterKey, started) > limits.egressRequestsPerInvocation) {
    return refuse(
      new ApiError(
        "egress_limit_exceeded",
        `this invocation already made ${limits.egressRequestsPerInvocation} outbound requests, its plan's limit`,
      ),
    );
  }

  const policy = await egressPolicyFor(deps.db, caller.agentId, { waitUntil: deps.waitUntil });
  const decision = decideEgress(policy, url, deps.environment);
  if (!decision.allowed) {
    return refuse(
      new ApiError("egress_denied", `outbound request to ${host} refused: ${decision.reason}`, { extra: { host } }),
    );
  }

  let upstreamRequest: Request;
  if (host === MODELS_HOST) {
    const [, name = "", ...rest] = url.pathname.split("/");
    provider = deps.providers[name];
    if (!provider) {
      return refuse(
        new ApiError(
          "not_found",
          `no platform model provider named ${JSON.stringify(name)}; available: ${Object.keys(deps.providers).join(", ")}`,
        ),
      );
    }
    const key = deps.secret(provider.keySecret);
    if (!key) {
      return refuse(new ApiError("service_unavailable", `the platform has no key configured for ${provider.name}`));
    }
    const used = await modelTokensUsed(deps.db, caller.userId, started);
    if (used >= limits.modelTokensPerPeriod) {
      return refuse(
        new ApiError(
          "token_budget_exceeded",
          `the plan's model token budget for this period (${limits.modelTokensPerPeriod}) is used up`,
          { extra: { used, limit: limits.modelTokensPerPeriod } },
        ),
      );
    }
    const headers = forwardHeaders(request.headers, AUTH_HEADERS);
    for (const [k, v] of Object.entries(keyHeaders(provider, key))) headers.set(k, v);
    if (provider.api === "anthropic" && !headers.has("anthropic-version"))
      headers.set("anthropic-version", "2023-06-01");
    const body = await modelRequestBody(provider, request, headers);
    upstreamRequest = new Request(`${provider.baseUrl}/${rest.join("/")}${url.search}`, {
      method: request.method,
      headers,
      body,
      redirect: "manual",
    });
  } else {
    upstreamRequest = new Request(request.url, {
      method: request.method,
      headers: forwardHeaders(request.headers, []),
      body: request.body,
      redirect: "manual",
    });
  }

  const abort = new AbortController();
  // Set once the answer's headers are in: then the timeout also records the request (an answer
  // whose body nobody reads to the end is still counted, when its time is up).
  let onTimeout: (() => void) | undefined;
  const timer = setTimeout(() => {
    abort.abort();
    onTimeout?.();
  }, deps.timeoutMs);
  let upstream: Response;
  try {
    upstream = await deps.fetch(new Request(upstreamRequest, { signal: abort.signal }));
  } catch {
    clearTimeout(timer);
    if (abort.signal.aborted) {
      return refuse(
        new ApiError("egress_timeout", `${host} did not answer within ${deps.timeoutMs} ms`, { extra: { host } }),
      );
    }
    return refuse(new ApiError("egress_failed", `the outbound request to ${host} failed`, { extra: { host } }));
  }
  if (!upstream.body) {
    clearTimeout(timer);
    record({ status: upstream.status, bytesOut: 0 });
    return upstream;
  }
  const contentType = upstream.headers.get("content-type") ?? "";
  const kind = !provider
    ? "none"
    : contentType.includes("text/event-stream")
      ? "sse"
      : contentType.includes("json")
        ? "json"
        : "none";
  const status = upstream.status;
  let recorded = false;
  onTimeout = () => {
    if (recorded) return;
    recorded = true;
    record({ status, errorCode: "egress_timeout" });
  };
  const metered = meterBody(upstream.body, kind, (outcome) => {
    clearTimeout(timer);
    if (recorded) return;
    recorded = true;
    record({ status, outcome });
  });
  return new Response(metered, { status, statusText: upstream.statusText, headers: upstream.headers });
}

function forwardHeaders(from: Headers, drop: readonly string[]): Headers {
  const out = new Headers();
  for (const [k, v] of from) {
    const name = k.toLowerCase();
    if (HOP_HEADERS.includes(name) || drop.includes(name) || name.startsWith("cf-") || name.startsWith("x-webhost-")) {
      continue;
    }
    out.set(k, v);
  }
  return out;
}

/**
 * An OpenAI-compatible streamed request gets `stream_options.include_usage`, so the stream ends
 * with a usage chunk the door can meter (an `[DONE]`-terminated stream's last data chunk then has
 * empty `choices`). Anything else passes through as sent.
 */
async function modelRequestBody(provider: ModelProvider, request: Request, headers: Headers): Promise<BodyInit | null> {
  if (request.method === "GET" || request.method === "HEAD" || !request.body) return null;
  if (provider.api !== "openai" || !(request.headers.get("content-type") ?? "").includes("json")) return request.body;
  const text = await request.text();
  try {
    const json = JSON.parse(text) as Record<string, unknown>;
    if (json && typeof json === "object" && json.stream === true) {
      const options =
        typeof json.stream_options === "object" && json.stream_options !== null ? json.stream_options : {};
      json.stream_options = { ...options, include_usage: true };
      headers.delete("content-length");
      return JSON.stringify(json);
    }
  } catch {
    // not JSON: the provider will say so
  }
  return text;
}
