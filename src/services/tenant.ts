// What every tenant-scoped service function receives: the database and the caller's user id, by
// which each of its queries is filtered (another tenant's object is "not found").
import type { Db } from "../db/client";

export type TenantDeps = { db: Db; userId: string };
