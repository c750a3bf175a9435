// Retry delays for queue messages: exponential in the delivery count (`message.attempts`, 1-based).

/** `baseSeconds` × 2^(attempts−1), capped at `maxSeconds`. */
export function backoffSeconds(attempts: number, opts: { baseSeconds: number; maxSeconds: number }): number {
  return Math.min(opts.maxSeconds, opts.baseSeconds * 2 ** Math.max(0, attempts - 1));
}
