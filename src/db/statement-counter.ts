// Counts the D1 statements this isolate runs, split into reads and writes: the instrument behind
// `npm run bench`'s "D1 statements per invocation" (B3). Off unless something calls
// `enableStatementCounting()`, which only the local-only bench routes do (BENCH_BASELINE="1",
// see src/bench/local-routes.ts); while off, `countingD1` hands back the binding untouched, so
// production runs exactly the code it would without this module.
// A statement is counted when it is executed (first/all/run/raw), once per statement in a
// db.batch(); `prepare` and `bind` cost nothing. `exec` (multi-statement SQL, unused by the
// gateway) counts as one write.

export type StatementCounts = { reads: number; writes: number };

const counts: StatementCounts = { reads: 0, writes: 0 };
let enabled = false;

export function enableStatementCounting(): void {
  enabled = true;
}

export function statementCounting(): boolean {
  return enabled;
}

export function statementCounts(): StatementCounts & { enabled: boolean } {
  return { ...counts, enabled };
}

export function resetStatementCounts(): void {
  counts.reads = 0;
  counts.writes = 0;
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

function countingStatement(real: D1PreparedStatement, kind: Kind): D1PreparedStatement {
  const wrapper = {
    bind: (...values: unknown[]) => countingStatement(real.bind(...values), kind),
    first: (column?: string) => {
      count(kind);
      return column === undefined ? real.first() : real.first(column);
    },
    all: () => {
      count(kind);
      return real.all();
    },
    run: () => {
      count(kind);
      return real.run();
    },
    raw: (options?: { columnNames?: boolean }) => {
      count(kind);
      return real.raw(options as { columnNames: true });
    },
  };
  realStatements.set(wrapper, real);
  Object.defineProperty(wrapper, "kind", { value: kind });
  return wrapper as unknown as D1PreparedStatement;
}

/** `d1` itself while counting is off; otherwise a D1Database that counts what it executes. */
export function countingD1(d1: D1Database): D1Database {
  if (!enabled) return d1;
  const wrapper = {
    prepare: (sql: string) => countingStatement(d1.prepare(sql), statementKind(sql)),
    batch: <T>(statements: D1PreparedStatement[]) => {
      const reals = statements.map((s) => {
        const real = realStatements.get(s);
        if (!real) return s; // prepared on the raw binding: counted as a write (unknown kind)
        count((s as unknown as { kind: Kind }).kind);
        return real;
      });
      for (const s of statements) if (!realStatements.has(s)) count("write");
      return d1.batch<T>(reals);
    },
    exec: (sql: string) => {
      count("write");
      return d1.exec(sql);
    },
    dump: () => d1.dump(),
    withSession: (constraintOrBookmark?: string) => d1.withSession(constraintOrBookmark),
  };
  return wrapper as unknown as D1Database;
}
