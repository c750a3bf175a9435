// Maps a verified token subject to a user row, creating it on first sight.
import { eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { users } from "../../db/schema";
import { newId } from "../../lib/ids";
import { IsolateCache } from "../../lib/isolate-cache";

const MAX_CACHED_SUBJECTS = 10_000;
// Subject -> user id, per isolate, kept until evicted: users are never re-keyed, so entries never go stale.
const userIdBySubject = new IsolateCache<string, string>({ maxEntries: MAX_CACHED_SUBJECTS, ttlMs: Infinity });

export function ensureUser({
  db,
  subject,
  waitUntil,
}: {
  db: Db;
  subject: string;
  /** Keeps an upsert shared by concurrent requests alive if the request that started it ends. */
  waitUntil?: (promise: Promise<unknown>) => void;
}): Promise<string> {
  return userIdBySubject.get(subject, () => upsertUser(db, subject), { waitUntil });
}

async function upsertUser(db: Db, subject: string): Promise<string> {
  const now = Date.now();
  // Insert-or-ignore then read: concurrent first requests of one subject converge on one row.
  const [row] = await db
    .batch([
      db
        .insert(users)
        .values({ id: newId("user", now), authSubject: subject, createdAt: now, updatedAt: now })
        .onConflictDoNothing({ target: users.authSubject }),
      db.select({ id: users.id }).from(users).where(eq(users.authSubject, subject)),
    ])
    .then(([, rows]) => rows);
  if (!row) throw new Error("user row missing after upsert");
  return row.id;
}
