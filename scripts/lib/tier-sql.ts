// The SQL behind `npm run set-tier`: cancel the user's active subscription, insert the new one
// and write the audit entry. Pure (no Node APIs), so the Workers-runtime tests run these exact
// statements against D1. Every value is validated and then quoted as an SQL string literal.

export const TIERS = ["free", "pro", "enterprise"] as const;
export type Tier = (typeof TIERS)[number];
const USER_ID = /^usr_[0-9a-z]{26}$/;
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/** Same layout as src/lib/ids.ts: prefix, 10 chars of ms time, 16 random chars. */
export function newId(prefix: string, now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let random = "";
  for (const b of crypto.getRandomValues(new Uint8Array(16))) random += ALPHABET[b % 32];
  return `${prefix}_${time}${random}`;
}

/** An SQL string literal. Control characters are refused rather than escaped. */
export function sqlString(value: string): string {
  if (typeof value !== "string" || [...value].some((ch) => ch.charCodeAt(0) < 0x20)) {
    throw new Error("refusing a control character");
  }
  return `'${value.replaceAll("'", "''")}'`;
}

/** `usr_…` is a user id; anything else is the user's auth subject (the JWT `sub`). */
export function userFilter(user: string): string {
  if (typeof user !== "string" || user.length === 0 || user.length > 255)
    throw new Error("user must be 1-255 characters");
  return USER_ID.test(user) ? `id = ${sqlString(user)}` : `auth_subject = ${sqlString(user)}`;
}

export function lookupUserSql(user: string): string {
  return `SELECT id, COALESCE((SELECT tier FROM subscriptions WHERE user_id = users.id AND status = 'active' ORDER BY created_at DESC LIMIT 1), 'free') AS tier FROM users WHERE ${userFilter(user)}`;
}

/**
 * The statements that move `user` to `tier`, in order. Each one selects the user row, so for an
 * unknown user they change nothing. The audit entry is written first so it can record the tier
 * being replaced.
 */
export function tierChangeStatements({
  user,
  tier,
  actor = "operator:set-tier",
  now = Date.now(),
}: {
  user: string;
  tier: string;
  actor?: string;
  now?: number;
}): string[] {
  if (!(TIERS as readonly string[]).includes(tier)) throw new Error(`tier must be one of ${TIERS.join(", ")}`);
  if (!Number.isSafeInteger(now)) throw new Error("now must be an integer");
  const where = userFilter(user);
  const u = `(SELECT id FROM users WHERE ${where})`;
  return [
    `INSERT INTO audit_log (id, user_id, actor, action, target_type, target_id, details, created_at) ` +
      `SELECT ${sqlString(newId("aud", now))}, id, ${sqlString(actor)}, 'tier.changed', 'user', id, ` +
      `json_object('tier', ${sqlString(tier)}, 'previousTier', COALESCE((SELECT tier FROM subscriptions ` +
      `WHERE user_id = users.id AND status = 'active' ORDER BY created_at DESC LIMIT 1), 'free')), ${now} ` +
      `FROM users WHERE ${where}`,
    `UPDATE subscriptions SET status = 'canceled', updated_at = ${now} WHERE status = 'active' AND user_id = ${u}`,
    `INSERT INTO subscriptions (id, user_id, tier, status, created_at, updated_at) ` +
      `SELECT ${sqlString(newId("sub", now))}, id, ${sqlString(tier)}, 'active', ${now}, ${now} FROM users WHERE ${where}`,
  ];
}
