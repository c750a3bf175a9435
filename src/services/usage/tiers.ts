// Plan tiers and their limits: defaults live here; the TIER_LIMITS var overrides any of them per
// tier and key. Parsing is strict (unknown tier or key, a value that is not a positive integer,
// invalid JSON): a bad override must stop the worker, never leave a tier running unlimited.
import { z } from "zod";
import { TIERS, type Tier } from "../../db/schema/subscriptions";

export { TIERS, type Tier };

export const TIER_LIMIT_KEYS = [
  "invocationsPerPeriod",
  "agents",
  "deploysPerDay",
  "cpuMs",
  "subRequests",
  "invokeBodyBytes",
  "streamSeconds",
  "telemetryEventsPerMinute",
  "telemetryEventsPerPeriod",
  "metricsRetentionDays",
  "bundleBytes",
  "modelTokensPerPeriod",
  "egressRequestsPerInvocation",
  "sessionIdleSeconds",
  "logLines",
  "logRetentionHours",
  "logLinesPerSecond",
] as const;

export type TierLimitKey = (typeof TIER_LIMIT_KEYS)[number];
export type TierLimits = Readonly<Record<TierLimitKey, number>>;
export type TierLimitsByTier = Readonly<Record<Tier, TierLimits>>;

const MiB = 1024 * 1024;

export const DEFAULT_TIER_LIMITS: TierLimitsByTier = {
  free: {
    invocationsPerPeriod: 1_000,
    agents: 3,
    deploysPerDay: 50,
    cpuMs: 50,
    subRequests: 50,
    invokeBodyBytes: 1 * MiB,
    streamSeconds: 300,
    telemetryEventsPerMinute: 600,
    telemetryEventsPerPeriod: 10_000,
    metricsRetentionDays: 7,
    bundleBytes: 3 * MiB,
    modelTokensPerPeriod: 100_000,
    egressRequestsPerInvocation: 50,
    sessionIdleSeconds: 3_600,
    logLines: 1_000,
    logRetentionHours: 24,
    logLinesPerSecond: 50,
  },
  pro: {
    invocationsPerPeriod: 100_000,
    agents: 25,
    deploysPerDay: 500,
    cpuMs: 1_000,
    subRequests: 200,
    invokeBodyBytes: 5 * MiB,
    streamSeconds: 900,
    telemetryEventsPerMinute: 6_000,
    telemetryEventsPerPeriod: 1_000_000,
    metricsRetentionDays: 30,
    bundleBytes: 10 * MiB,
    modelTokensPerPeriod: 10_000_000,
    egressRequestsPerInvocation: 200,
    sessionIdleSeconds: 3_600,
    logLines: 10_000,
    logRetentionHours: 72,
    logLinesPerSecond: 200,
  },
  enterprise: {
    invocationsPerPeriod: 10_000_000,
    agents: 250,
    deploysPerDay: 5_000,
    cpuMs: 30_000,
    subRequests: 1_000,
    invokeBodyBytes: 10 * MiB,
    streamSeconds: 3_600,
    telemetryEventsPerMinute: 60_000,
    telemetryEventsPerPeriod: 100_000_000,
    metricsRetentionDays: 90,
    bundleBytes: 10 * MiB,
    modelTokensPerPeriod: 1_000_000_000,
    egressRequestsPerInvocation: 1_000,
    sessionIdleSeconds: 3_600,
    logLines: 100_000,
    logRetentionHours: 168,
    logLinesPerSecond: 1_000,
  },
};

/** Tiers whose agents may use egress mode `open` (any public host); the others list their hosts. */
export const EGRESS_OPEN_TIERS: readonly Tier[] = ["pro", "enterprise"];

const limitValue = z
  .number({ error: "must be a number" })
  .int("must be an integer")
  .positive("must be a positive integer");

// What the runtime can enforce at most: Workers allow up to 5 minutes of CPU and 10,000
// subrequests per invocation (egress requests are subrequests too), so larger values would be
// silently meaningless. A stream is held
// open by the gateway for at most a day. Metrics are kept at most ten years. An idle session is
// kept at most 30 days (its Durable Object's storage is the cost).
const RUNTIME_MAXIMA: Partial<Record<TierLimitKey, number>> = {
  cpuMs: 300_000,
  subRequests: 10_000,
  streamSeconds: 86_400,
  metricsRetentionDays: 3_650,
  egressRequestsPerInvocation: 10_000,
  sessionIdleSeconds: 30 * 86_400,
  // One agent's log buffer lives in one Durable Object's SQLite storage (services/logs/): a
  // million lines of at most 4 KB stays under its 10 GB; a week is as far back as it keeps.
  logLines: 1_000_000,
  logRetentionHours: 168,
  logLinesPerSecond: 10_000,
};

// What a limit must allow at least to be usable: the telemetry rate must admit one full batch
// (TELEMETRY_MAX_BATCH_EVENTS in services/telemetry/event.ts), or a batch could never be accepted.
const RUNTIME_MINIMA: Partial<Record<TierLimitKey, number>> = {
  telemetryEventsPerMinute: 100,
};

const tierOverride = z.strictObject(
  Object.fromEntries(
    TIER_LIMIT_KEYS.map((k) => {
      const max = RUNTIME_MAXIMA[k];
      const min = RUNTIME_MINIMA[k];
      let value = limitValue;
      if (max !== undefined) value = value.max(max, `must be at most ${max}`);
      if (min !== undefined) value = value.min(min, `must be at least ${min}`);
      return [k, value.optional()];
    }),
  ) as Record<TierLimitKey, z.ZodOptional<typeof limitValue>>,
);

const overridesSchema = z.strictObject(
  Object.fromEntries(TIERS.map((t) => [t, tierOverride.optional()])) as Record<
    Tier,
    z.ZodOptional<typeof tierOverride>
  >,
);

/**
 * The effective limits: defaults with TIER_LIMITS applied. `raw` undefined or blank means the
 * defaults. Throws an Error naming every bad entry (e.g. `TIER_LIMITS.free.agents: must be a
 * positive integer`); the config loader turns it into a configuration error.
 */
export function parseTierLimits(raw: string | undefined): TierLimitsByTier {
  if (raw === undefined || raw.trim() === "") return DEFAULT_TIER_LIMITS;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new Error("TIER_LIMITS is not valid JSON");
  }
  const parsed = overridesSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const path = ["TIER_LIMITS", ...issue.path.map(String)].join(".");
      if (issue.code === "unrecognized_keys")
        return `${path}: unknown ${issue.path.length === 0 ? "tier" : "limit"} ${issue.keys.join(", ")}`;
      return `${path}: ${issue.message}`;
    });
    throw new Error(problems.join("; "));
  }
  const out = {} as Record<Tier, TierLimits>;
  for (const tier of TIERS) out[tier] = { ...DEFAULT_TIER_LIMITS[tier], ...stripUndefined(parsed.data[tier] ?? {}) };
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
