// A session: a conversation pinned to the deployment that served its first turn, admitting one
// turn at a time, kept by its own Durable Object (entrypoints/session-keeper.ts) until it is ended
// or has been idle for the tier's `sessionIdleSeconds`. The types the resolver (resolve.ts), the
// session routes (sessions.ts) and the Durable Object share.

/** Which session: the Durable Object is named by all three, so tenants and agents never share one. */
export type SessionKey = { userId: string; agentId: string; sessionId: string };

/** A session as its owner sees it. */
export type SessionView = {
  id: string;
  agentId: string;
  /** The deployment every turn of this session goes to. */
  deploymentId: string;
  createdAt: number;
  /** When its last turn started or ended (ms since epoch). */
  lastUsedAt: number;
  /** When it ends unless a turn comes first: `lastUsedAt` plus the idle TTL. */
  expiresAt: number;
  /** Turns that reached the agent. */
  turns: number;
  /** Whether a turn is running now (a second one would be 409 session_busy). */
  busy: boolean;
};

/** How long a session lives without a turn, and how long one turn may hold it at most. */
export type SessionTimes = {
  idleMs: number;
  /** After this, a turn whose release never arrived (a crashed gateway) no longer holds the session. */
  leaseMs: number;
};

/** The outcome of asking to start a turn. */
export type TurnGrant =
  /** Another turn holds the session until `leaseUntil` at the latest. */
  | { kind: "busy" }
  /** A new session and no deployment to pin it to: nothing was stored. */
  | { kind: "unpinned" }
  /** The turn may run on `deploymentId`; `fresh` when this turn created (or re-created) the session. */
  | { kind: "granted"; turnId: string; deploymentId: string; pinRolloutId: string | null; fresh: boolean };

/**
 * The Durable Object's RPC surface. Every method takes the full key and answers as if the session
 * did not exist when the key's user or agent is not the session's.
 */
export interface SessionKeeperApi {
  /**
   * Starts a turn. An existing session keeps its pin; a new (or expired) one is pinned to
   * `candidateDeploymentId` (the agent's active deployment), or is `unpinned` when there is none.
   */
  beginTurn(
    key: SessionKey,
    candidateDeploymentId: string | null,
    times: SessionTimes,
    candidateRolloutId?: string | null,
  ): Promise<TurnGrant>;
  /**
   * Moves the pin of the session whose turn `turnId` is running (a pin a canary rollout chose, once
   * that rollout has ended: resolve.ts); `rolloutId` null makes it an ordinary pin.
   */
  repin(key: SessionKey, turnId: string, deploymentId: string, rolloutId: string | null): Promise<void>;
  /** Ends the turn; `reachedAgent` counts it. A turn id that no longer holds the session is ignored. */
  endTurn(key: SessionKey, turnId: string, reachedAgent: boolean): Promise<void>;
  /** Creates the session pinned to `deploymentId` (POST …/sessions); null if it already exists. */
  create(key: SessionKey, deploymentId: string, idleMs: number): Promise<SessionView | null>;
  get(key: SessionKey): Promise<SessionView | null>;
  /** Ends the session (its storage is deleted); false if there was none. */
  end(key: SessionKey): Promise<boolean>;
}

/** Finds a session's Durable Object. */
export type SessionKeepers = (key: SessionKey) => SessionKeeperApi;

/** The name of a session's Durable Object: one per (user, agent, session id). */
export function sessionObjectName(key: SessionKey): string {
  return JSON.stringify([key.userId, key.agentId, key.sessionId]);
}
