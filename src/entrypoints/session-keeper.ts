// The SessionKeeper Durable Object: one per (user, agent, session id). It holds the session's pin
// (the deployment that served its first turn), admits one turn at a time, counts turns, and
// deletes everything when the session has been idle for its TTL (an alarm) or is ended. All state
// is one record in the object's synchronous KV storage, so each method reads, checks and writes it
// without yielding: two turns arriving together cannot both be admitted.
import { DurableObject } from "cloudflare:workers";
import type { SessionKeeperApi, SessionKey, SessionTimes, SessionView, TurnGrant } from "../services/sessions/types";

type Stored = SessionKey & {
  deploymentId: string;
  /** The canary rollout whose split chose the pin, while that may still be undone (resolve.ts). */
  pinRolloutId?: string | null;
  createdAt: number;
  lastUsedAt: number;
  idleMs: number;
  turns: number;
  /** The turn holding the session, until `leaseUntil` at the latest. */
  turn: { id: string; leaseUntil: number } | null;
};

const RECORD = "session";

// It reads no bindings: the gateway hands it everything it keeps.
export class SessionKeeper extends DurableObject<object> implements SessionKeeperApi {
  async beginTurn(
    key: SessionKey,
    candidateDeploymentId: string | null,
    times: SessionTimes,
    candidateRolloutId: string | null = null,
  ): Promise<TurnGrant> {
    const now = Date.now();
    let s = this.load(key, now);
    if (s?.turn && s.turn.leaseUntil > now) return { kind: "busy" };
    const fresh = !s;
    if (!s) {
      if (candidateDeploymentId === null) return { kind: "unpinned" };
      s = {
        ...pickKey(key),
        deploymentId: candidateDeploymentId,
        pinRolloutId: candidateRolloutId,
        createdAt: now,
        lastUsedAt: now,
        idleMs: 0,
        turns: 0,
        turn: null,
      };
    }
    s.turn = { id: crypto.randomUUID(), leaseUntil: now + times.leaseMs };
    s.idleMs = times.idleMs;
    s.lastUsedAt = now;
    this.save(s);
    // Not expired while the turn may still run: the alarm comes after its lease at the earliest.
    await this.ctx.storage.setAlarm(Math.max(s.turn.leaseUntil, now + s.idleMs));
    return {
      kind: "granted",
      turnId: s.turn.id,
      deploymentId: s.deploymentId,
      pinRolloutId: s.pinRolloutId ?? null,
      fresh,
    };
  }

  async repin(key: SessionKey, turnId: string, deploymentId: string, rolloutId: string | null): Promise<void> {
    const s = this.load(key, Date.now(), { ignoreExpiry: true });
    if (!s || s.turn?.id !== turnId) return;
    s.deploymentId = deploymentId;
    s.pinRolloutId = rolloutId;
    this.save(s);
  }

  async endTurn(key: SessionKey, turnId: string, reachedAgent: boolean): Promise<void> {
    const now = Date.now();
    const s = this.load(key, now, { ignoreExpiry: true });
    if (!s || s.turn?.id !== turnId) return;
    s.turn = null;
    s.lastUsedAt = now;
    if (reachedAgent) s.turns++;
    this.save(s);
    await this.ctx.storage.setAlarm(now + s.idleMs);
  }

  async create(key: SessionKey, deploymentId: string, idleMs: number): Promise<SessionView | null> {
    const now = Date.now();
    if (this.load(key, now)) return null;
    const s: Stored = { ...pickKey(key), deploymentId, createdAt: now, lastUsedAt: now, idleMs, turns: 0, turn: null };
    this.save(s);
    await this.ctx.storage.setAlarm(now + idleMs);
    return view(s, now);
  }

  async get(key: SessionKey): Promise<SessionView | null> {
    const now = Date.now();
    const s = this.load(key, now);
    return s ? view(s, now) : null;
  }

  async end(key: SessionKey): Promise<boolean> {
    const s = this.load(key, Date.now());
    if (!s) return false;
    // A turn still running finds no session when it ends (endTurn ignores it); its next turn starts fresh.
    await this.ctx.storage.deleteAll();
    return true;
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    const s = this.ctx.storage.kv.get<Stored>(RECORD);
    if (!s) return void (await this.ctx.storage.deleteAll());
    const due = expiresAt(s);
    if (now >= due) {
      await this.ctx.storage.deleteAll();
      return;
    }
    await this.ctx.storage.setAlarm(due);
  }

  // ---------------------------------------------------------------------------------------------

  /**
   * The session if it exists, is this key's and has not expired. An expired one is deleted here
   * (the alarm may not have run yet), so the caller starts fresh.
   */
  private load(key: SessionKey, now: number, opts: { ignoreExpiry?: boolean } = {}): Stored | null {
    const s = this.ctx.storage.kv.get<Stored>(RECORD);
    if (!s || s.userId !== key.userId || s.agentId !== key.agentId || s.sessionId !== key.sessionId) return null;
    if (!opts.ignoreExpiry && now >= expiresAt(s)) {
      this.ctx.storage.kv.delete(RECORD);
      return null;
    }
    return s;
  }

  private save(s: Stored) {
    this.ctx.storage.kv.put(RECORD, s);
  }
}

function pickKey(key: SessionKey): SessionKey {
  return { userId: key.userId, agentId: key.agentId, sessionId: key.sessionId };
}

/** Idle TTL after the last use; never while a turn may still be running. */
function expiresAt(s: Stored): number {
  const idle = s.lastUsedAt + s.idleMs;
  return s.turn ? Math.max(idle, s.turn.leaseUntil) : idle;
}

function view(s: Stored, now: number): SessionView {
  return {
    id: s.sessionId,
    agentId: s.agentId,
    deploymentId: s.deploymentId,
    createdAt: s.createdAt,
    lastUsedAt: s.lastUsedAt,
    expiresAt: expiresAt(s),
    turns: s.turns,
    busy: s.turn !== null && s.turn.leaseUntil > now,
  };
}
