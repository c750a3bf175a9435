// Polls until `probe` returns a value that is not undefined, or fails after `timeoutMs`.
export async function waitFor<T>(
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? "a condition"}`);
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 25));
  }
}
