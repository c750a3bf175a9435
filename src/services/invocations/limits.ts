// Per-invocation resource limits for a user's scripts. One function so that the user's tier
// (issue 5: subscriptions + TIER_RUNTIME_LIMITS) can replace the constant without touching the
// invoke path; until then everyone gets the free tier's defaults.
import type { Db } from "../../db/client";
import { DEFAULT_TIER_LIMITS } from "../../runtime/limits";
import type { RuntimeLimits } from "../../runtime/types";

export const DEFAULT_RUNTIME_LIMITS: RuntimeLimits = Object.freeze({ ...DEFAULT_TIER_LIMITS.free });

export async function limitsForUser(_ctx: { db: Db }, _userId: string): Promise<RuntimeLimits> {
  return DEFAULT_RUNTIME_LIMITS;
}
