// Whose failure a call lost with the agent host is. The host runs every agent on one thread, so
// one runaway agent stalls it and the watchdog (scripts/lib/agent-host.ts) kills it: every call in
// flight there is lost at once, and only one of them is the runaway's. The others failed because
// the platform restarted the host under them, which is the platform's failure, not their agent's
// timeout (docs/local-isolation.md, "What a caller sees").
//
// The gateway cannot see which agent holds the host's thread, so it reasons from order. It pings
// the host before sending a call while others are in flight, and every PING_EVERY_MS while any is;
// the host answers a ping only when its thread is free. Pings and calls reach the host in the order
// they are sent, so a ping the host never answered marks the point after which nothing the gateway
// sent ran: a call sent after it only queued behind the stall. The runaway is the last call sent
// before it (the last that can have taken the thread), every other lost call is a bystander.
// Without a stalled ping (the host crashed or was stopped while its thread was free) no call is
// to blame. An agent that awaited something and then looped, while a later call was already
// parked in the host, is misjudged: the later call is blamed (docs/local-isolation.md).
//
// State is per gateway isolate (module scope): one isolate serves every request locally, and only
// plain data is shared between requests (each call sends its pings from its own request).

/** How often the host is pinged while calls are in flight. */
export const PING_EVERY_MS = 250;
/** A ping outstanding this long is a stall: a free host answers one in a few milliseconds. */
const STALLED_PING_MS = 500;
/** The calls lost with one host restart arrive together; they share one verdict. */
const VERDICT_WINDOW_MS = 3_000;
/** A call whose RPC never settled (its request context went away) is forgotten after this long. */
const FORGET_AFTER_MS = 3 * 60 * 60_000;

export type CallTicket = { readonly seq: number; readonly sentAt: number };
export type Blame = "this_agent" | "platform";

type Ping = { afterSeq: number; sentAt: number };

export class HostCallLedger {
  private seq = 0;
  private readonly inFlight = new Set<CallTicket>();
  private pingId = 0;
  private lastPingAt = Number.NEGATIVE_INFINITY;
  private lastPingAfterSeq = 0;
  private lastAnsweredPing = 0;
  private readonly unanswered = new Map<number, Ping>();
  private verdict: { at: number; culpritSeq: number | null } | null = null;

  /**
   * A call is about to be sent to the host. When other calls are in flight and one was sent since
   * the last ping, a ping goes first: a ping between any two calls is what tells, after a stall,
   * whether the earlier one may have taken the thread before the later one was even queued.
   */
  begin(ping: () => Promise<unknown>, now = Date.now()): CallTicket {
    if (this.inFlight.size > 0 && this.lastPingAfterSeq < this.seq) this.sendPing(ping, now);
    const ticket = { seq: ++this.seq, sentAt: now };
    this.inFlight.add(ticket);
    return ticket;
  }

  /** The call settled (answered, failed or lost): it is no longer in flight. */
  end(ticket: CallTicket): void {
    this.inFlight.delete(ticket);
  }

  /** Sends a ping unless one went out less than PING_EVERY_MS ago (however many calls are in flight). */
  maybePing(ping: () => Promise<unknown>, now = Date.now()): void {
    if (now - this.lastPingAt < PING_EVERY_MS * 0.8) return;
    this.sendPing(ping, now);
  }

  private sendPing(ping: () => Promise<unknown>, now: number): void {
    this.lastPingAt = now;
    this.lastPingAfterSeq = this.seq;
    const id = ++this.pingId;
    this.unanswered.set(id, { afterSeq: this.seq, sentAt: now });
    let answer: Promise<unknown>;
    try {
      answer = ping();
    } catch {
      return; // not a host that answers pings: it stays unanswered, which only matters once calls are lost
    }
    answer.then(
      () => {
        this.unanswered.delete(id);
        if (id > this.lastAnsweredPing) this.lastAnsweredPing = id;
        // Earlier pings still outstanding were dropped with their request: a later answer supersedes them.
        for (const older of this.unanswered.keys()) if (older < id) this.unanswered.delete(older);
      },
      () => {
        // The host went away under the ping: it stays unanswered, evidence for the verdict.
      },
    );
  }

  /**
   * Whose failure `ticket`'s call is, now that the host was lost under it. The first call lost with
   * a restart decides for all of them (they are rejected together, each removing itself after).
   */
  blame(ticket: CallTicket, now = Date.now()): Blame {
    if (!this.verdict || now - this.verdict.at > VERDICT_WINDOW_MS) {
      this.verdict = { at: now, culpritSeq: this.culprit(now) };
      // Those pings went to the host that is gone; the restarted one starts with a clean slate.
      this.unanswered.clear();
      this.lastPingAt = Number.NEGATIVE_INFINITY;
      this.lastPingAfterSeq = 0;
    }
    return this.verdict.culpritSeq === ticket.seq ? "this_agent" : "platform";
  }

  private culprit(now: number): number | null {
    let stalledAfter: number | null = null;
    for (const [id, ping] of this.unanswered) {
      if (id <= this.lastAnsweredPing || now - ping.sentAt < STALLED_PING_MS) continue;
      if (stalledAfter === null || ping.afterSeq < stalledAfter) stalledAfter = ping.afterSeq;
    }
    if (stalledAfter === null) return null;
    let culprit: number | null = null;
    for (const call of this.inFlight) {
      if (now - call.sentAt > FORGET_AFTER_MS) {
        this.inFlight.delete(call);
        continue;
      }
      if (call.seq <= stalledAfter && (culprit === null || call.seq > culprit)) culprit = call.seq;
    }
    return culprit;
  }
}

/** The gateway isolate's one ledger: there is one agent host. */
export const hostCalls = new HostCallLedger();
