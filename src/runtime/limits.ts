// Per-invocation CPU and subrequest limits for each tier, passed to the runtime on every invoke
// (the namespace mechanism hands them to DISPATCHER.get(…, { limits })). Configurable with the
// TIER_RUNTIME_LIMITS var (JSON, any subset of tiers); unset tiers keep the defaults below.
import { z } from "zod";
import { TIERS, type Tier } from "../db/schema/subscriptions";
import { ConfigError } from "../env";
import type { RuntimeLimits } from "./types";

export const DEFAULT_TIER_LIMITS: Record<Tier, RuntimeLimits> = {
  free: { cpuMs: 50, subRequests: 50 },
  pro: { cpuMs: 1_000, subRequests: 200 },
  enterprise: { cpuMs: 30_000, subRequests: 1_000 },
};

const limitsSchema = z.strictObject({
  cpuMs: z.number().int().min(1).max(300_000),
  subRequests: z.number().int().min(0).max(10_000),
});

const tierLimitsSchema = z.partialRecord(z.enum(TIERS), limitsSchema);

export function parseTierLimits(raw: string | undefined): Record<Tier, RuntimeLimits> {
  if (raw === undefined || raw.trim() === "") return DEFAULT_TIER_LIMITS;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new ConfigError("invalid configuration: TIER_RUNTIME_LIMITS: not valid JSON");
  }
  const parsed = tierLimitsSchema.safeParse(json);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new ConfigError(`invalid configuration: TIER_RUNTIME_LIMITS: ${fields}`);
  }
  return { ...DEFAULT_TIER_LIMITS, ...parsed.data };
}
