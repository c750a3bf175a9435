// Types for tier-sql.mjs, so the Workers-runtime tests can import it.
export declare const TIERS: readonly ["free", "pro", "enterprise"];
export declare function newId(prefix: string, now?: number): string;
export declare function sqlString(value: string): string;
export declare function userFilter(user: string): string;
export declare function lookupUserSql(user: string): string;
export declare function tierChangeStatements(input: {
  user: string;
  tier: string;
  actor?: string;
  now?: number;
}): string[];
