// The traffic split of a running rollout: which invocations go to the candidate. Pure and
// synchronous, so routing stays a cache lookup plus a hash (no D1 on the hot path).
//
// The key is the invocation's sessionId (or its request id when it has none), hashed together
// with the rollout's id into one of SPLIT_BUCKETS buckets; the candidate serves buckets below
// percent × SPLIT_BUCKETS / 100. So:
//  - the same session lands in the same bucket for the whole rollout: it sees the same version on
//    every call of a stage, and a session on the candidate stays there as the stages grow;
//  - each rollout (a new id) draws a new split, so one unlucky session is not always the canary.

/** Buckets per rollout: percentages are whole numbers, so 100 would do; 10,000 leaves room. */
export const SPLIT_BUCKETS = 10_000;

/**
 * FNV-1a (32-bit) over the UTF-16 code units of `text`, then MurmurHash3's finalizer so the low
 * bits (which the modulo keeps) depend on every character: stable across isolates and releases.
 */
export function stableHash32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** The bucket (0 … SPLIT_BUCKETS-1) of a split key within one rollout. */
export function splitBucket(rolloutId: string, key: string): number {
  return stableHash32(`${rolloutId}\u0000${key}`) % SPLIT_BUCKETS;
}

/** Whether the invocation with this split key goes to the rollout's candidate at `percent`. */
export function goesToCandidate(rolloutId: string, key: string, percent: number): boolean {
  return splitBucket(rolloutId, key) < Math.round((percent * SPLIT_BUCKETS) / 100);
}
