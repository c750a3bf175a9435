// A user's tier: their active subscription's tier, else "free". Read on hot paths (every agent
// creation, deploy and — through the invoke path — invocation), so it is cached per isolate.
import { and, desc, eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import { subscriptions } from "../../db/schema";
import { newId } from "../../lib/ids";
import { IsolateCache } from "../../lib/isolate-cache";
import { recordAudit } from "../audit/audit";
import type { Tier, TierLimits, TierLimitsByTier } from "./tiers";

/**
 * How long an isolate trusts a tier it read. Tier changes are rare operator or billing events;
 * 30 s means an upgrade reaches every isolate within half a minute and a downgrade grants the old
 * limits for at most that long, while a busy agent's invocations cost no D1 read each.
 */
export const TIER_CACHE_TTL_MS = 30_000;
const MAX_CACHED_USERS = 10_000;

// userId -> tier, up to TIER_CACHE_TTL_MS stale (see above); this isolate's own changes drop it at once.
const tiers = new IsolateCache<string, Tier>({ maxEntries: MAX_CACHED_USERS, ttlMs: TIER_CACHE_TTL_MS });

export function getUserTier(
  db: Db,
  userId: string,
  opts: { now?: number; waitUntil?: (promise: Promise<unknown>) => void } = {},
): Promise<Tier> {
  return tiers.get(userId, () => readUserTier(db, userId), opts);
}

/** Drops this isolate's cached tier of a user (after this isolate changed it). */
export function forgetUserTier(userId: string): void {
  tiers.delete(userId);
}

/** The tier straight from D1, bypassing the cache. */
export async function readUserTier(db: Db, userId: string): Promise<Tier> {
  const row = await db
    .select({ tier: subscriptions.tier })
    .from(subscriptions)
    .where(and(eq(subscriptions.userId, userId), eq(subscriptions.status, "active")))
    .orderBy(desc(subscriptions.createdAt), desc(subscriptions.id))
    .limit(1)
    .get();
  return row?.tier ?? "free";
}

/** The caller's tier and that tier's effective limits (defaults with TIER_LIMITS applied). */
export async function limitsForUser(
  db: Db,
  userId: string,
  tierLimits: TierLimitsByTier,
  /** Keeps a tier read shared by concurrent requests alive if the request that started it ends. */
  opts: { waitUntil?: (promise: Promise<unknown>) => void } = {},
): Promise<{ tier: Tier; limits: TierLimits }> {
  const tier = await getUserTier(db, userId, opts);
  return { tier, limits: tierLimits[tier] };
}

/**
 * Moves a user to `tier`: cancels the active subscription, inserts the new active one and writes
 * the audit entry, all in one batch. (`npm run set-tier` does the same in SQL for operators.)
 */
export async function setUserTier(
  db: Db,
  input: { userId: string; tier: Tier; actor: string },
): Promise<{ previousTier: Tier; tier: Tier }> {
  const now = Date.now();
  const previousTier = await readUserTier(db, input.userId);
  await db.batch([
    db
      .update(subscriptions)
      .set({ status: "canceled", updatedAt: now })
      .where(and(eq(subscriptions.userId, input.userId), eq(subscriptions.status, "active"))),
    db.insert(subscriptions).values({
      id: newId("subscription", now),
      userId: input.userId,
      tier: input.tier,
      status: "active",
      createdAt: now,
      updatedAt: now,
    }),
    recordAudit(
      db,
      {
        userId: input.userId,
        actor: input.actor,
        action: "tier.changed",
        targetType: "user",
        targetId: input.userId,
        details: { tier: input.tier, previousTier },
      },
      { now },
    ),
  ]);
  forgetUserTier(input.userId);
  return { previousTier, tier: input.tier };
}
