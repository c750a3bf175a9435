// D1 faults for tests: a database binding whose statements fail the way D1 fails in an outage,
// one that records the SQL it is given, and SQLite triggers that make one real statement fail
// inside a real batch (so D1's own transaction semantics are what is tested).
import { env } from "cloudflare:workers";

/** D1's message when the database cannot be reached (what the gateway must answer 503 to). */
export const D1_OUTAGE_MESSAGE = "D1_ERROR: Network connection lost.";

/**
 * `real`, except that every statement whose SQL matches `fails` rejects with a D1 outage error
 * (as does a batch holding one). `fails` defaults to everything: a full outage.
 */
export function faultyD1(real: D1Database = env.DB, fails: (sql: string) => boolean = () => true): D1Database {
  const failing = new WeakSet<object>();
  const outage = () => Promise.reject(new Error(D1_OUTAGE_MESSAGE));
  const failingStatement = (): D1PreparedStatement => {
    const stmt = {
      bind: () => stmt,
      first: outage,
      run: outage,
      all: outage,
      raw: outage,
    } as unknown as D1PreparedStatement;
    failing.add(stmt);
    return stmt;
  };
  return {
    prepare: (sql: string) => (fails(sql) ? failingStatement() : real.prepare(sql)),
    batch: (stmts: D1PreparedStatement[]) => (stmts.some((s) => failing.has(s)) ? outage() : real.batch(stmts)),
    exec: (sql: string) => (fails(sql) ? outage() : real.exec(sql)),
    dump: () => outage(),
    withSession: () => {
      throw new Error(D1_OUTAGE_MESSAGE);
    },
  } as unknown as D1Database;
}

/** `real`, recording the SQL of every statement prepared on it. */
export function recordingD1(real: D1Database = env.DB): D1Database & { statements: string[] } {
  const statements: string[] = [];
  return {
    statements,
    prepare: (sql: string) => {
      statements.push(sql);
      return real.prepare(sql);
    },
    batch: (stmts: D1PreparedStatement[]) => real.batch(stmts),
    exec: (sql: string) => real.exec(sql),
    dump: () => real.dump(),
    withSession: (c?: string) => real.withSession(c),
  } as unknown as D1Database & { statements: string[] };
}

/**
 * Runs `work` while a trigger makes matching writes to `table` fail inside the real D1 (RAISE
 * ABORT: the statement fails, and with it the batch it belongs to). The trigger is always dropped.
 */
export async function withFailingWrites<T>(
  spec: { table: string; on: "INSERT" | "UPDATE"; when: string },
  work: () => Promise<T>,
): Promise<T> {
  const name = `test_fail_${crypto.randomUUID().replaceAll("-", "")}`;
  await env.DB.prepare(
    `CREATE TRIGGER ${name} BEFORE ${spec.on} ON ${spec.table} WHEN ${spec.when}
     BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
  ).run();
  try {
    return await work();
  } finally {
    await env.DB.prepare(`DROP TRIGGER IF EXISTS ${name}`).run();
  }
}
