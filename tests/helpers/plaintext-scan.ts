// Searches every text column of every table in D1 for the given strings: the check that secret
// values never reach the database in plaintext.
import { env } from "cloudflare:workers";

export async function findPlaintextInD1(needles: string[]): Promise<string[]> {
  const hits: string[] = [];
  const tables = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%'",
  ).all<{ name: string }>();
  for (const { name: table } of tables.results) {
    const columns = await env.DB.prepare(`PRAGMA table_info("${table}")`).all<{ name: string; type: string }>();
    for (const column of columns.results) {
      if (!/TEXT|CHAR|CLOB|^$/i.test(column.type)) continue;
      for (const needle of needles) {
        const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM "${table}" WHERE instr("${column.name}", ?) > 0`)
          .bind(needle)
          .first<{ n: number }>();
        if (row && row.n > 0) hits.push(`${table}.${column.name} holds ${JSON.stringify(needle.slice(0, 12))}…`);
      }
    }
  }
  return hits;
}
