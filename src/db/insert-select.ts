// Conditional inserts (`INSERT … SELECT <values> WHERE <condition>`) through drizzle's query
// builder, so they can run inside `db.batch` (drizzle cannot batch raw SQL that has parameters).
// drizzle lists every column of the table in definition order; this builds the matching values.
// Column defaults do not apply to such an insert, so the row must name every column.
import { getTableColumns, type SQL, sql } from "drizzle-orm";
import type { SQLiteTable } from "drizzle-orm/sqlite-core";

/** `SELECT <row's values in the table's column order> WHERE <condition>`. */
export function selectRowWhere<T extends SQLiteTable>(table: T, row: T["$inferInsert"], condition: SQL): SQL {
  const columns = getTableColumns(table) as Record<string, unknown>;
  const values = Object.keys(columns).map((key) => {
    if (!(key in row)) throw new Error(`selectRowWhere: the row has no value for column ${key}`);
    const value = (row as Record<string, unknown>)[key];
    if (value !== null && typeof value === "object") return sql`${JSON.stringify(value)}`;
    return sql`${value ?? null}`;
  });
  return sql`SELECT ${sql.join(values, sql`, `)} WHERE ${condition}`;
}
