// One bounded cache of values loaded on demand, for module-scope caches that live as long as the
// isolate (tiers, users, routes, telemetry keys, verified tokens, invocation counts). The rules,
// the same for every use:
//  - An entry is trusted for `ttlMs` counted from when its load *started* (so a change committed
//    after that start is seen once the TTL has passed), and only at or after that start (a caller
//    whose clock reads earlier loads again). `ttlOf` may shorten the TTL from the loaded value;
//    0 or less means the value is returned but not kept.
//  - Concurrent `get`s of a missing or expired key share one load while it is younger than
//    `ttlMs` and MAX_JOIN_MS; a joined load answers as if the caller had arrived when it started.
//    An older load is presumed stuck, and the next caller starts its own. The caller that starts
//    a load hands it to `waitUntil` when given one, so the callers sharing it are not left
//    waiting if that caller's request ends first.
//  - A load that fails is never kept: every caller sharing it sees the failure, the next `get`
//    loads again, and an expired entry it would have replaced stays as it was.
//  - `delete` and `clear` also drop loads in flight: their results are returned to the callers
//    already waiting but never stored, so an invalidation is not undone by an older read.
//  - At most `maxEntries` entries; storing one more drops the one stored longest ago (insertion
//    order, not LRU: entries expire anyway, so a busy entry that is dropped costs one reload,
//    and a hit stays a plain lookup).

/** How long a load in flight may be joined at most; ours (D1 reads, a 3 s JWKS fetch) take far less. */
export const MAX_JOIN_MS = 10_000;

export type IsolateCacheOptions<V> = {
  /** Most entries kept; storing one more drops the oldest. */
  maxEntries: number;
  /** How long an entry is trusted, from when its load started (`Infinity`: until dropped). */
  ttlMs: number;
  /** A shorter TTL for a particular value (capped at `ttlMs`); 0 or less: do not keep it. */
  ttlOf?: (value: V) => number;
  /** The time source; tests inject one. Defaults to `Date.now`. */
  clock?: () => number;
};

/**
 * Loads a missing or expired value. `previous` is the expired entry's value, if one is stored,
 * for callers that carry state from one load to the next; most ignore it.
 */
export type IsolateCacheLoad<V> = (previous: V | undefined) => Promise<V>;

type Entry<V> = { value: V; loadStartedAt: number; expiresAt: number };
type Flight<V> = { startedAt: number; promise: Promise<V> };

export class IsolateCache<K, V> {
  readonly #entries = new Map<K, Entry<V>>();
  readonly #flights = new Map<K, Flight<V>>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #ttlOf: ((value: V) => number) | undefined;
  readonly #joinMs: number;
  readonly #clock: () => number;

  constructor(options: IsolateCacheOptions<V>) {
    this.#maxEntries = options.maxEntries;
    this.#ttlMs = options.ttlMs;
    this.#ttlOf = options.ttlOf;
    this.#joinMs = Math.min(options.ttlMs, MAX_JOIN_MS);
    this.#clock = options.clock ?? Date.now;
  }

  /** The cached value of `key`, else the result of `load` (shared with concurrent callers). */
  get(
    key: K,
    load: IsolateCacheLoad<V>,
    opts: { now?: number; waitUntil?: (promise: Promise<unknown>) => void } = {},
  ): Promise<V> {
    const now = opts.now ?? this.#clock();
    const entry = this.#entries.get(key);
    if (entry && now >= entry.loadStartedAt && now < entry.expiresAt) return Promise.resolve(entry.value);
    const flight = this.#flights.get(key);
    if (flight && now >= flight.startedAt && now - flight.startedAt < this.#joinMs) return flight.promise;
    const started = this.#load(key, load, now, entry?.value);
    opts.waitUntil?.(started.catch(() => undefined));
    return started;
  }

  /** Forgets `key`, including a load in flight (its result will not be stored). */
  delete(key: K): void {
    this.#entries.delete(key);
    this.#flights.delete(key);
  }

  /** Forgets everything, including loads in flight. */
  clear(): void {
    this.#entries.clear();
    this.#flights.clear();
  }

  #load(key: K, load: IsolateCacheLoad<V>, now: number, previous: V | undefined): Promise<V> {
    // The async wrapper turns a load that throws synchronously into a rejected flight.
    const promise = (async () => load(previous))().then(
      (value) => {
        if (this.#flights.get(key) === flight) {
          this.#flights.delete(key);
          this.#store(key, value, now);
        }
        return value;
      },
      (err: unknown) => {
        if (this.#flights.get(key) === flight) this.#flights.delete(key);
        throw err;
      },
    );
    const flight: Flight<V> = { startedAt: now, promise };
    this.#flights.set(key, flight);
    return promise;
  }

  #store(key: K, value: V, loadStartedAt: number): void {
    const ttl = Math.min(this.#ttlMs, this.#ttlOf ? this.#ttlOf(value) : this.#ttlMs);
    this.#entries.delete(key);
    if (!(ttl > 0)) return;
    this.#entries.set(key, { value, loadStartedAt, expiresAt: loadStartedAt + ttl });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }
}
