// Counts the D1 statements this isolate runs, split into reads and writes: the instrument behind
// `npm run bench`'s "D1 statements per invocation" (B3). Only the bench entry (src/bench/entry.ts)
// uses it, by handing the gateway a counting D1 binding; the production bundle never contains it.
// A statement is counted when it is executed (first/all/run/raw), once per statement in a
// db.batch(); `prepare` and `bind` cost nothing. `exec` (multi-statement SQL, unused by the
// gateway) counts as one write.

// It also times each execution (call to settled, in this isolate's clock, which advances across
// I/O) and keeps the slowest since the last reset: B8's "longest single D1 statement" of a cron run.

/** The slowest execution since the last reset: its time and the start of its SQL. */
export type SlowestStatement = { ms: number; sql: string };
export type StatementCounts = { reads: number; writes: number; slowest: SlowestStatement | null };

const counts: StatementCounts = { reads: 0, writes: 0, slowest: null };

export function statementCounts(): StatementCounts {
  return { ...counts };
}

export function resetStatementCounts(): void {
  counts.reads = 0;
  counts.writes = 0;
  counts.slowest = null;
}

/** `execution` as it was, timed: the slowest so far is kept with the first 160 chars of its SQL. */
function timed<T>(sql: string, execution: Promise<T>): Promise<T> {
  const started = performance.now();
  const note = () => {
    const ms = performance.now() - started;
    if (!counts.slowest || ms > counts.slowest.ms) counts.slowest = { ms, sql: sql.replace(/\s+/g, " ").slice(0, 160) };
  };
  execution.then(note, note);
  return execution;
}

type Kind = "read" | "write";

/** A SELECT (also behind a WITH) reads; anything that inserts, updates, deletes or replaces writes. */
export function statementKind(sql: string): Kind {
  const text = sql.trimStart();
  if (/^(select|pragma|explain)\b/i.test(text)) return "read";
  if (/^with\b/i.test(text)) return /\b(insert|update|delete|replace)\b/i.test(text) ? "write" : "read";
  return "write";
}

function count(kind: Kind, n = 1): void {
  if (kind === "read") counts.reads += n;
  else counts.writes += n;
}

// Wrapper -> the real statement, so db.batch() receives the binding's own statement objects.
const realStatements = new WeakMap<object, D1PreparedStatement>();

function countingStatement(real: D1PreparedStatement, kind: Kind, sql: string): D1PreparedStatement {
  const wrapper = {
    bind: (...values: unknown[]) => countingStatement(real.bind(...values), kind, sql),
    first: (column?: string) => {
      count(kind);
      return timed(sql, column === undefined ? real.first() : real.first(column));
    },
    all: () => {
      count(kind);
      return timed(sql, real.all());
    },
    run: () => {
      count(kind);
      return timed(sql, real.run());
    },
    raw: (options?: { columnNames?: boolean }) => {
      count(kind);
      return timed(sql, real.raw(options as { columnNames: true }));
    },
  };
  realStatements.set(wrapper, real);
  Object.defineProperty(wrapper, "kind", { value: kind });
  return wrapper as unknown as D1PreparedStatement;
}

// Binding -> its counting wrapper, one per isolate: the gateway keeps one drizzle client per
// binding object (src/db/client.ts), so a new wrapper per request would rebuild it every time.
const wrappers = new WeakMap<D1Database, D1Database>();

/** A D1Database that counts what it executes on `d1`; the same wrapper for the same binding. */
export function countingD1(d1: D1Database): D1Database {
  let wrapper = wrappers.get(d1);
  if (!wrapper) {
    wrapper = countingWrapper(d1);
    wrappers.set(d1, wrapper);
  }
  return wrapper;
}

function countingWrapper(d1: D1Database): D1Database {
  const wrapper = {
    prepare: (sql: string) => countingStatement(d1.prepare(sql), statementKind(sql), sql),
    batch: <T>(statements: D1PreparedStatement[]) => {
      const reals = statements.map((s) => {
        const real = realStatements.get(s);
        if (!real) return s; // prepared on the raw binding: counted as a write (unknown kind)
        count((s as unknown as { kind: Kind }).kind);
        return real;
      });
      for (const s of statements) if (!realStatements.has(s)) count("write");
      // A batch is one round trip that D1 runs as one transaction: timed as one statement.
      return timed(`batch of ${statements.length}`, d1.batch<T>(reals));
    },
    exec: (sql: string) => {
      count("write");
      return timed(sql, d1.exec(sql));
    },
    dump: () => d1.dump(),
    withSession: (constraintOrBookmark?: string) => d1.withSession(constraintOrBookmark),
  };
  return wrapper as unknown as D1Database;
}
