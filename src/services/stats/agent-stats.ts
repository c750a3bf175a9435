// GET /v1/agents/:agentId/stats: an agent's health over a window, read from the pre-aggregated
// buckets (aggregate.ts), never from metrics_events. A window is a whole number of buckets ending
// with the current one: `1h` the last 60 minute buckets, `24h` the last 24 hour buckets, `7d` the
// last 168 — so it reaches back at most one bucket less than its name, plus the current bucket's
// elapsed part. Reads at most (buckets × deployments) rows; percentiles come from the summed
// log-scale histograms.
import { DURATION_BOUNDS_MS, DURATION_BUCKETS, durationColumn } from "../../db/schema/agent-stats";
import { getAgent } from "../agents/agents";
import type { TenantDeps } from "../tenant";
import { HOUR_MS, MINUTE_MS } from "./aggregate";

export const STATS_WINDOWS = {
  "1h": { bucketMs: MINUTE_MS, buckets: 60 },
  "24h": { bucketMs: HOUR_MS, buckets: 24 },
  "7d": { bucketMs: HOUR_MS, buckets: 168 },
} as const;

export type StatsWindow = keyof typeof STATS_WINDOWS;

export type StatsSummary = {
  invocations: number;
  errors: number;
  /** errors / invocations, 0 when there were none. */
  errorRate: number;
  errorsByCode: Array<{ code: string; count: number }>;
  durationMs: {
    mean: number | null;
    min: number | null;
    max: number | null;
    p50: number | null;
    p95: number | null;
    p99: number | null;
  };
  tokens: { input: number; output: number };
  modelTokens: { input: number; output: number };
};

export type AgentStats = {
  agentId: string;
  window: StatsWindow;
  bucketMs: number;
  from: number;
  to: number;
  totals: StatsSummary;
  deployments: Array<StatsSummary & { deploymentId: string }>;
};

const HISTOGRAM = Array.from({ length: DURATION_BUCKETS }, (_, i) => durationColumn(i));

export const STATS_SQL = `
  SELECT deployment_id, SUM(invocations) AS invocations, SUM(errors) AS errors,
    SUM(duration_ms_total) AS duration_ms_total, MIN(duration_ms_min) AS duration_ms_min,
    MAX(duration_ms_max) AS duration_ms_max, SUM(input_tokens) AS input_tokens,
    SUM(output_tokens) AS output_tokens, SUM(model_input_tokens) AS model_input_tokens,
    SUM(model_output_tokens) AS model_output_tokens,
    ${HISTOGRAM.map((c) => `SUM(${c}) AS ${c}`).join(", ")}
  FROM agent_stats
  WHERE agent_id = ?1 AND user_id = ?2 AND bucket_ms = ?3 AND bucket_start >= ?4
  GROUP BY deployment_id`;

export const ERRORS_SQL = `
  SELECT deployment_id, error_code, SUM(count) AS count
  FROM agent_stats_errors
  WHERE agent_id = ?1 AND user_id = ?2 AND bucket_ms = ?3 AND bucket_start >= ?4
  GROUP BY deployment_id, error_code`;

type StatsRow = Record<string, number | string | null> & { deployment_id: string };

type Accumulator = {
  invocations: number;
  errors: number;
  durationTotal: number;
  min: number | null;
  max: number | null;
  tokensIn: number;
  tokensOut: number;
  modelIn: number;
  modelOut: number;
  histogram: number[];
  errorsByCode: Map<string, number>;
};

function emptyAccumulator(): Accumulator {
  return {
    invocations: 0,
    errors: 0,
    durationTotal: 0,
    min: null,
    max: null,
    tokensIn: 0,
    tokensOut: 0,
    modelIn: 0,
    modelOut: 0,
    histogram: new Array(DURATION_BUCKETS).fill(0),
    errorsByCode: new Map(),
  };
}

const num = (v: unknown) => (typeof v === "number" ? v : 0);

function addRow(acc: Accumulator, row: StatsRow) {
  acc.invocations += num(row.invocations);
  acc.errors += num(row.errors);
  acc.durationTotal += num(row.duration_ms_total);
  const min = row.duration_ms_min;
  const max = row.duration_ms_max;
  if (typeof min === "number") acc.min = acc.min === null ? min : Math.min(acc.min, min);
  if (typeof max === "number") acc.max = acc.max === null ? max : Math.max(acc.max, max);
  acc.tokensIn += num(row.input_tokens);
  acc.tokensOut += num(row.output_tokens);
  acc.modelIn += num(row.model_input_tokens);
  acc.modelOut += num(row.model_output_tokens);
  HISTOGRAM.forEach((col, i) => {
    acc.histogram[i] = (acc.histogram[i] ?? 0) + num(row[col]);
  });
}

/**
 * The duration below which a share `p` of the histogram's counts lie: the bucket holding that rank,
 * interpolated linearly inside it (as Prometheus does), clamped to the observed min and max. The
 * error is at most the bucket's width (about 41% of the value above 16 ms; exact below 5 ms).
 */
export function percentileFromHistogram(histogram: number[], p: number, min: number | null, max: number | null) {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(p * total));
  let before = 0;
  for (let i = 0; i < histogram.length; i++) {
    const count = histogram[i] ?? 0;
    if (before + count >= rank) {
      const lower = i === 0 ? 0 : (DURATION_BOUNDS_MS[i - 1] ?? 0);
      const upper = DURATION_BOUNDS_MS[i] ?? max ?? lower;
      // Integer durations: bucket [lower, upper) holds lower … upper-1.
      let value = lower + ((upper - 1 - lower) * (rank - before)) / count;
      if (min !== null) value = Math.max(value, min);
      if (max !== null) value = Math.min(value, max);
      return Math.round(value);
    }
    before += count;
  }
  return max;
}

function summarize(acc: Accumulator): StatsSummary {
  return {
    invocations: acc.invocations,
    errors: acc.errors,
    errorRate: acc.invocations === 0 ? 0 : acc.errors / acc.invocations,
    errorsByCode: [...acc.errorsByCode]
      .map(([code, count]) => ({ code, count }))
      .sort((a, b) => b.count - a.count || a.code.localeCompare(b.code)),
    durationMs: {
      mean: acc.invocations === 0 ? null : Math.round(acc.durationTotal / acc.invocations),
      min: acc.min,
      max: acc.max,
      p50: percentileFromHistogram(acc.histogram, 0.5, acc.min, acc.max),
      p95: percentileFromHistogram(acc.histogram, 0.95, acc.min, acc.max),
      p99: percentileFromHistogram(acc.histogram, 0.99, acc.min, acc.max),
    },
    tokens: { input: acc.tokensIn, output: acc.tokensOut },
    modelTokens: { input: acc.modelIn, output: acc.modelOut },
  };
}

export async function getAgentStats(
  deps: TenantDeps,
  agentId: string,
  window: StatsWindow,
  now = Date.now(),
): Promise<AgentStats> {
  await getAgent(deps, agentId);
  const { bucketMs, buckets } = STATS_WINDOWS[window];
  const from = now - (now % bucketMs) - (buckets - 1) * bucketMs;
  const params = [agentId, deps.userId, bucketMs, from];
  const d1 = deps.db.$client;
  const [stats, errors] = await d1.batch<Record<string, unknown>>([
    d1.prepare(STATS_SQL).bind(...params),
    d1.prepare(ERRORS_SQL).bind(...params),
  ]);
  const total = emptyAccumulator();
  const perDeployment = new Map<string, Accumulator>();
  const of = (id: string) => {
    let acc = perDeployment.get(id);
    if (!acc) {
      acc = emptyAccumulator();
      perDeployment.set(id, acc);
    }
    return acc;
  };
  for (const row of (stats?.results ?? []) as StatsRow[]) {
    addRow(total, row);
    addRow(of(row.deployment_id), row);
  }
  for (const row of (errors?.results ?? []) as Array<{ deployment_id: string; error_code: string; count: number }>) {
    for (const acc of [total, of(row.deployment_id)]) {
      acc.errorsByCode.set(row.error_code, (acc.errorsByCode.get(row.error_code) ?? 0) + row.count);
    }
  }
  return {
    agentId,
    window,
    bucketMs,
    from,
    to: now,
    totals: summarize(total),
    deployments: [...perDeployment]
      .map(([deploymentId, acc]) => ({ deploymentId, ...summarize(acc) }))
      .sort((a, b) => b.invocations - a.invocations || a.deploymentId.localeCompare(b.deploymentId)),
  };
}
