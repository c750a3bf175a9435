// The per-deployment telemetry rate limit (tier key `telemetryEventsPerMinute`): a token bucket per
// deployment that holds at most a minute's worth of events and refills at limit/60 events per
// second, so a deployment may send a burst of up to its per-minute limit and then its steady rate.
// A report costs one token per event (a batch of 100 costs 100) and is admitted whole or not at
// all; a refused report costs nothing, nor does one the queue then failed to take
// (returnTelemetryTokens).
//
// The buckets live in this isolate's memory: the limit is exact within one isolate, and the
// global rate a deployment can reach is the limit times the number of isolates that happen to
// serve its reports (Cloudflare spreads traffic over isolates and locations). It is a guard
// against a runaway or abusive worker flooding D1 from one place, not a billing meter; the
// per-period quota (event-quota.ts) is the bound that holds across isolates.

/** Buckets kept at most; beyond this the bucket touched longest ago is dropped (it refills anyway). */
const MAX_BUCKETS = 10_000;

type Bucket = { tokens: number; updatedAt: number; perMinute: number };

const buckets = new Map<string, Bucket>();

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number; perMinute: number };

/**
 * Takes `cost` tokens from the deployment's bucket if it holds that many. `perMinute` is the tier's
 * limit (a change of tier takes effect at the next report, with the tokens the bucket has).
 */
export function takeTelemetryTokens(
  deploymentId: string,
  input: { cost: number; perMinute: number; now?: number },
): RateDecision {
  const now = input.now ?? Date.now();
  const perMs = input.perMinute / 60_000;
  let bucket = buckets.get(deploymentId);
  if (bucket) {
    buckets.delete(deploymentId); // re-inserted below: the map's order is least recently used first
    const elapsed = Math.max(0, now - bucket.updatedAt);
    bucket.tokens = Math.min(input.perMinute, bucket.tokens + elapsed * perMs);
    bucket.updatedAt = Math.max(bucket.updatedAt, now);
    bucket.perMinute = input.perMinute;
  } else {
    bucket = { tokens: input.perMinute, updatedAt: now, perMinute: input.perMinute };
  }
  buckets.set(deploymentId, bucket);
  if (buckets.size > MAX_BUCKETS) {
    const oldest = buckets.keys().next().value;
    if (oldest !== undefined) buckets.delete(oldest);
  }
  if (bucket.tokens >= input.cost) {
    bucket.tokens -= input.cost;
    return { allowed: true };
  }
  const missing = Math.min(input.cost, input.perMinute) - bucket.tokens;
  return {
    allowed: false,
    retryAfterSeconds: Math.max(1, Math.ceil(missing / perMs / 1000)),
    perMinute: input.perMinute,
  };
}

/**
 * Gives back tokens a report took but did not use (the queue refused it): a report that was not
 * accepted costs nothing, like a refused one, so its retry is not rate limited by itself.
 */
export function returnTelemetryTokens(deploymentId: string, cost: number): void {
  const bucket = buckets.get(deploymentId);
  if (bucket) bucket.tokens = Math.min(bucket.perMinute, bucket.tokens + Math.max(0, cost));
}
