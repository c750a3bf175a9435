// Which D1 errors mean the database cannot be reached or is overloaded (transient: try again
// later), as opposed to a statement D1 ran and refused. The API answers the first with 503
// (app.ts); the usage-queue consumer stops writing on it instead of looking for a bad message
// (services/metering/usage-queue.ts).

/**
 * D1 outages and overload, by message. D1 prefixes every error (a SQL bug too) with `D1_ERROR`,
 * so only the transient causes count: a bug must stay a logged 500, not pose as an outage.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const text = `${err.message} ${err.cause instanceof Error ? err.cause.message : ""}`;
  return /Network connection lost|storage operation exceeded|storage caused object to be reset|overloaded|SQLITE_BUSY|D1 DB is overloaded|internal error; reference/i.test(
    text,
  );
}
