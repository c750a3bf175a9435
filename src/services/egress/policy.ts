// Per-agent egress policy: which hosts an agent's outbound fetch() may reach, and the checks every
// destination passes whatever the policy says (scheme, private and loopback addresses). The policy
// is read live by the egress door (cached per isolate for POLICY_CACHE_TTL_MS), not snapshotted
// per deployment: tightening it (a leaked host, an abused API) must not wait for a redeploy.
import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { agentEgressPolicies } from "../../db/schema";
import { ApiError } from "../../lib/errors";
import { IsolateCache } from "../../lib/isolate-cache";
import { getAgent } from "../agents/agents";
import { recordAudit, userActor } from "../audit/audit";
import type { TenantDeps } from "../tenant";
import { EGRESS_OPEN_TIERS, type Tier } from "../usage/tiers";

export const EGRESS_MODES = ["deny", "allowlist", "open"] as const;
export type EgressMode = (typeof EGRESS_MODES)[number];
export type EgressPolicy = { mode: EgressMode; allow: string[] };

/** A new agent's policy (and any agent without a stored one): platform models only. */
export const DEFAULT_EGRESS_POLICY: EgressPolicy = { mode: "allowlist", allow: [] };

/** The host agents call platform models on; allowed in every mode but `deny`. */
export const MODELS_HOST = "models.webhost.internal";

export const MAX_ALLOW_ENTRIES = 100;
/** How long an isolate trusts a policy it read; a change made in the same isolate is seen at once. */
export const POLICY_CACHE_TTL_MS = 10_000;

const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const HOST_PATTERN = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`);
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Why an allow entry is refused, or undefined. Entries are host names (`*.` allowed) or IP literals. */
export function allowEntryProblem(entry: string): string | undefined {
  if (entry.length > 253) return "must be at most 253 characters";
  if (entry !== entry.toLowerCase()) return "must be lower case";
  if (entry.startsWith("[") && entry.endsWith("]")) return undefined; // an IPv6 literal, compared as written
  if (!HOST_PATTERN.test(entry))
    return "must be a host name (optionally `*.` followed by a domain), without scheme, port or path";
  if (entry === "*" || /^\*\.[^.]+$/.test(entry)) return "a wildcard must name a domain below a top-level domain";
  return undefined;
}

/** Normalised host: lower case, no trailing dot. IPv6 literals keep their brackets (as URL.hostname gives them). */
export function normalizeHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, "");
}

export function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith("*.")) {
    const domain = pattern.slice(2);
    return host.endsWith(`.${domain}`);
  }
  return pattern === host;
}

/**
 * Private, loopback, link-local, unspecified and other non-public destinations, by literal or by
 * reserved name. A public name that resolves to a private address cannot be seen from a Worker
 * (no DNS resolution); Cloudflare's own fetch does not reach private networks in production.
 */
export function isPrivateHost(host: string): boolean {
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (host.endsWith(".local") || host.endsWith(".internal") || host.endsWith(".home.arpa")) return true;
  const v4 = IPV4.exec(host);
  if (v4) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    return (
      a === 0 ||
      a === 10 ||
      a === 127 ||
      (a === 100 && b >= 64 && b <= 127) ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 198 && (b === 18 || b === 19)) ||
      a >= 224
    );
  }
  if (host.startsWith("[")) {
    const v6 = host.slice(1, -1);
    if (v6 === "::" || v6 === "::1") return true;
    if (/^f[cd]/.test(v6) || /^fe[89ab]/.test(v6)) return true; // unique local, link-local
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(v6);
    if (mapped?.[1]) return isPrivateHost(mapped[1]);
    if (/^::ffff:/.test(v6)) return true; // a mapped address in hex form: refuse rather than decode
    return false;
  }
  // Integer, hex or octal IPv4 forms never reach here: URL parsing normalises them to dotted form.
  return false;
}

export type EgressDecision = { allowed: true } | { allowed: false; reason: string };

/**
 * May an agent under `policy` reach `url`? Platform models (MODELS_HOST) are allowed in every mode
 * but `deny`. A private destination is refused in every mode; only with ENVIRONMENT=development
 * and an allow entry naming it exactly (so local tests can reach a fake on 127.0.0.1) is it allowed.
 */
export function decideEgress(policy: EgressPolicy, url: URL, environment: string): EgressDecision {
  const host = normalizeHost(url.hostname);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { allowed: false, reason: `only http and https are allowed, not ${url.protocol}` };
  }
  if (policy.mode === "deny") return { allowed: false, reason: "the agent's egress policy is deny" };
  if (host === MODELS_HOST) return { allowed: true };
  if (isPrivateHost(host)) {
    if (environment === "development" && policy.allow.includes(host)) return { allowed: true };
    return { allowed: false, reason: `${host} is a private, loopback or link-local destination` };
  }
  if (policy.mode === "open") return { allowed: true };
  if (policy.allow.some((pattern) => hostMatches(pattern, host))) return { allowed: true };
  return { allowed: false, reason: `${host} is not in the agent's egress allowlist` };
}

// agentId -> policy, at most POLICY_CACHE_TTL_MS stale; a PUT in this isolate drops it at once.
const policies = new IsolateCache<string, EgressPolicy>({ maxEntries: 10_000, ttlMs: POLICY_CACHE_TTL_MS });

function parseAllow(text: string): string[] {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
  } catch {
    return [];
  }
}

async function readPolicy(db: Db, agentId: string): Promise<EgressPolicy | undefined> {
  const row = await db
    .select({ mode: agentEgressPolicies.mode, allow: agentEgressPolicies.allow })
    .from(agentEgressPolicies)
    .where(eq(agentEgressPolicies.agentId, agentId))
    .get();
  return row ? { mode: row.mode, allow: parseAllow(row.allow) } : undefined;
}

/** The policy the egress door enforces for an agent (the default when none is stored). */
export function egressPolicyFor(
  db: Db,
  agentId: string,
  opts: { waitUntil?: (promise: Promise<unknown>) => void } = {},
): Promise<EgressPolicy> {
  return policies.get(agentId, async () => (await readPolicy(db, agentId)) ?? DEFAULT_EGRESS_POLICY, opts);
}

export async function getEgressPolicy(
  deps: TenantDeps,
  agentId: string,
): Promise<EgressPolicy & { updatedAt: number | null }> {
  await getAgent(deps, agentId);
  const row = await deps.db
    .select()
    .from(agentEgressPolicies)
    .where(and(eq(agentEgressPolicies.agentId, agentId), eq(agentEgressPolicies.userId, deps.userId)))
    .get();
  return row
    ? { mode: row.mode, allow: parseAllow(row.allow), updatedAt: row.updatedAt }
    : { ...DEFAULT_EGRESS_POLICY, updatedAt: null };
}

export async function putEgressPolicy(
  deps: TenantDeps & { tier: Tier },
  agentId: string,
  input: EgressPolicy,
): Promise<EgressPolicy & { updatedAt: number }> {
  const errors = input.allow.flatMap((entry, i) => {
    const problem = allowEntryProblem(entry);
    return problem ? [{ location: `body.allow.${i}`, message: `${JSON.stringify(entry)}: ${problem}` }] : [];
  });
  if (errors.length > 0) throw new ApiError("validation_failed", "invalid allow entries", { errors });
  if (input.mode === "open" && !EGRESS_OPEN_TIERS.includes(deps.tier)) {
    throw new ApiError(
      "plan_limit_exceeded",
      `egress mode "open" is not available on the ${deps.tier} tier (use an allowlist, or upgrade to ${EGRESS_OPEN_TIERS.join(" or ")})`,
    );
  }
  const agent = await getAgent(deps, agentId);
  const allow = [...new Set(input.allow)];
  const now = Date.now();
  const { db, userId } = deps;
  await db.batch([
    db
      .insert(agentEgressPolicies)
      .values({ agentId: agent.id, userId, mode: input.mode, allow: JSON.stringify(allow), updatedAt: now })
      .onConflictDoUpdate({
        target: agentEgressPolicies.agentId,
        set: { mode: input.mode, allow: JSON.stringify(allow), updatedAt: now },
        where: sql`${agentEgressPolicies.userId} = ${userId}`,
      }),
    recordAudit(
      db,
      {
        userId,
        actor: userActor(userId),
        action: "egress.policy_set",
        targetType: "agent",
        targetId: agentId,
        details: { mode: input.mode, allow: allow.length },
      },
      { now },
    ),
  ]);
  policies.delete(agentId);
  return { mode: input.mode, allow, updatedAt: now };
}
