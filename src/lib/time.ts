// UTC calendar helpers for billing periods and daily limits.

/** `YYYY-MM` of the UTC month containing `ms`. */
export function periodKeyOf(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

/** Start (inclusive) and end (exclusive) of a `YYYY-MM` period, in ms. */
export function periodBounds(periodKey: string): { start: number; end: number } {
  const [y, m] = periodKey.split("-").map(Number) as [number, number];
  return { start: Date.UTC(y, m - 1, 1), end: Date.UTC(y, m, 1) };
}

export function startOfUtcDay(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}
