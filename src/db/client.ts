// The drizzle client over D1. `createDb` is cheap to call: building a drizzle client walks the
// whole schema, so one client per D1 binding is made per isolate and then reused (it holds no
// per-request state).
import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema";

export type Db = ReturnType<typeof build>;

function build(d1: D1Database) {
  return drizzle(d1, { schema });
}

// D1 binding -> its drizzle client. Isolate-lifetime.
const clients = new WeakMap<D1Database, Db>();

export function createDb(d1: D1Database): Db {
  let db = clients.get(d1);
  if (!db) {
    db = build(d1);
    clients.set(d1, db);
  }
  return db;
}
