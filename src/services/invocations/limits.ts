// Per-invocation resource limits for a user's scripts. One function so that tiers (issue 5) can
// replace the constant without touching the invoke path.
import type { Db } from "../../db/client";
import type { RuntimeLimits } from "../../runtime/types";

export const DEFAULT_RUNTIME_LIMITS: RuntimeLimits = Object.freeze({ cpuMs: 50, subRequests: 50 });

export async function limitsForUser(_ctx: { db: Db }, _userId: string): Promise<RuntimeLimits> {
  return DEFAULT_RUNTIME_LIMITS;
}
