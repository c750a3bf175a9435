// The isolate cache (src/lib/isolate-cache.ts) that every per-isolate cache is built on: TTL from
// the load's start with an injected clock, eviction of the oldest entry, no remembered failures,
// one load for concurrent misses, and invalidation that an older load cannot undo.
import { describe, expect, it } from "vitest";
import { IsolateCache, MAX_JOIN_MS } from "../src/lib/isolate-cache";

function testClock(start = 1_000_000) {
  const clock = { now: start, read: () => clock.now };
  return clock;
}

/** A load that counts its calls and answers `${key}#${call number}`. */
function countingLoad(key: string) {
  const load = Object.assign(async () => `${key}#${++load.calls}`, { calls: 0 });
  return load;
}

/** A promise and the functions that settle it, for loads the test finishes by hand. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("isolate cache", () => {
  it("serves an entry for ttlMs from when its load started, then loads again", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 1000, clock: clock.read });
    const load = countingLoad("a");
    expect(await cache.get("a", load)).toBe("a#1");
    clock.now += 999;
    expect(await cache.get("a", load)).toBe("a#1");
    clock.now += 1;
    expect(await cache.get("a", load)).toBe("a#2");
    expect(load.calls).toBe(2);
  });

  it("counts the TTL from the start of a slow load, not its end", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 1000, clock: clock.read });
    const slow = deferred<string>();
    const pending = cache.get("a", () => slow.promise);
    clock.now += 900;
    slow.resolve("read at start");
    expect(await pending).toBe("read at start");
    clock.now += 100;
    expect(await cache.get("a", async () => "fresh")).toBe("fresh");
  });

  it("does not trust an entry at a time before its load started", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 1000, clock: clock.read });
    const load = countingLoad("a");
    await cache.get("a", load);
    expect(await cache.get("a", load, { now: clock.now - 1 })).toBe("a#2");
  });

  it("lets the value shorten its TTL, and keeps no value whose TTL is 0", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, number>({
      maxEntries: 10,
      ttlMs: 1000,
      ttlOf: (ttl) => ttl,
      clock: clock.read,
    });
    expect(await cache.get("short", async () => 100)).toBe(100);
    clock.now += 99;
    expect(await cache.get("short", async () => -1)).toBe(100);
    clock.now += 1;
    expect(await cache.get("short", async () => 0)).toBe(0);
    expect(await cache.get("short", async () => 5000)).toBe(5000);
    clock.now += 999;
    expect(await cache.get("short", async () => -1)).toBe(5000);
    clock.now += 1;
    expect(await cache.get("short", async () => 7)).toBe(7);
  });

  it("drops the oldest entry when one more than maxEntries is stored", async () => {
    const cache = new IsolateCache<string, string>({ maxEntries: 2, ttlMs: 60_000, clock: testClock().read });
    const loads = { a: countingLoad("a"), b: countingLoad("b"), c: countingLoad("c") };
    await cache.get("a", loads.a);
    await cache.get("b", loads.b);
    await cache.get("a", loads.a); // a hit does not make "a" younger: eviction is by insertion
    await cache.get("c", loads.c);
    expect(await cache.get("b", loads.b)).toBe("b#1");
    expect(await cache.get("c", loads.c)).toBe("c#1");
    expect(await cache.get("a", loads.a)).toBe("a#2");
    expect(loads.a.calls).toBe(2);
  });

  it("does not keep a failed load: every waiting caller sees the failure and the next get loads again", async () => {
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 60_000, clock: testClock().read });
    let calls = 0;
    const failing = async () => {
      calls++;
      throw new Error("D1 is down");
    };
    const both = [cache.get("a", failing), cache.get("a", failing)];
    await expect(both[0]).rejects.toThrow("D1 is down");
    await expect(both[1]).rejects.toThrow("D1 is down");
    expect(calls).toBe(1);
    expect(await cache.get("a", async () => "recovered")).toBe("recovered");
  });

  it("treats a load that throws synchronously as a failed load", async () => {
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 60_000, clock: testClock().read });
    const throwing = (): Promise<string> => {
      throw new Error("sync");
    };
    await expect(cache.get("a", throwing)).rejects.toThrow("sync");
    expect(await cache.get("a", async () => "ok")).toBe("ok");
  });

  it("hands a load the expired value it replaces, and keeps that value when the load fails", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 1000, clock: clock.read });
    expect(await cache.get("a", async (previous) => `v1 after ${previous}`)).toBe("v1 after undefined");
    clock.now += 1000;
    await expect(cache.get("a", () => Promise.reject(new Error("down")))).rejects.toThrow("down");
    expect(await cache.get("a", async (previous) => `v2 after ${previous}`)).toBe("v2 after v1 after undefined");
  });

  it("calls load once for concurrent misses of one key", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 1000, clock: clock.read });
    const slow = deferred<string>();
    let calls = 0;
    const load = () => {
      calls++;
      return slow.promise;
    };
    const gets = Array.from({ length: 10 }, () => cache.get("a", load));
    clock.now += 999;
    gets.push(cache.get("a", load));
    slow.resolve("shared");
    expect(await Promise.all(gets)).toEqual(Array(11).fill("shared"));
    expect(calls).toBe(1);
  });

  it("starts a new load instead of joining one older than ttlMs, and the older never overwrites it", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 1000, clock: clock.read });
    const stuck = deferred<string>();
    const first = cache.get("a", () => stuck.promise);
    clock.now += 1000;
    expect(await cache.get("a", async () => "newer")).toBe("newer");
    stuck.resolve("older");
    expect(await first).toBe("older");
    expect(await cache.get("a", async () => "not called")).toBe("newer");
  });

  it("joins a load that never settles for less than MAX_JOIN_MS, even when entries never expire", async () => {
    const clock = testClock();
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: Infinity, clock: clock.read });
    const load = countingLoad("a");
    void cache.get("a", () => new Promise<string>(() => {}));
    clock.now += MAX_JOIN_MS - 1;
    void cache.get("a", load);
    expect(load.calls).toBe(0);
    clock.now += 1;
    expect(await cache.get("a", load)).toBe("a#1");
    expect(await cache.get("a", load)).toBe("a#1");
  });

  it("hands a load it starts to waitUntil, and a shared load only once", async () => {
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 1000, clock: testClock().read });
    const held: Promise<unknown>[] = [];
    const waitUntil = (promise: Promise<unknown>) => held.push(promise);
    const failing = deferred<string>();
    const gets = [
      cache.get("a", () => failing.promise, { waitUntil }),
      cache.get("a", () => failing.promise, { waitUntil }),
    ];
    expect(held).toHaveLength(1);
    failing.reject(new Error("down"));
    await expect(gets[0]).rejects.toThrow("down");
    await expect(gets[1]).rejects.toThrow("down");
    // What waitUntil holds never rejects: a failed load is the callers' to handle, not the runtime's.
    await expect(held[0]).resolves.toBeUndefined();
    await cache.get("a", async () => "hit", { waitUntil });
    await cache.get("a", async () => "not called", { waitUntil });
    expect(held).toHaveLength(2);
  });

  it("does not store a load that was in flight when its key was deleted or the cache cleared", async () => {
    for (const invalidate of ["delete", "clear"] as const) {
      const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 60_000, clock: testClock().read });
      const stale = deferred<string>();
      const waiting = cache.get("a", () => stale.promise);
      if (invalidate === "delete") cache.delete("a");
      else cache.clear();
      const fresh = cache.get("a", async () => "after invalidation");
      stale.resolve("before invalidation");
      expect(await waiting).toBe("before invalidation");
      expect(await fresh).toBe("after invalidation");
      expect(await cache.get("a", async () => "not called")).toBe("after invalidation");
    }
  });

  it("forgets a stored entry on delete and every entry on clear", async () => {
    const cache = new IsolateCache<string, string>({ maxEntries: 10, ttlMs: 60_000, clock: testClock().read });
    await cache.get("a", async () => "a1");
    await cache.get("b", async () => "b1");
    cache.delete("a");
    expect(await cache.get("a", async () => "a2")).toBe("a2");
    expect(await cache.get("b", async () => "b2")).toBe("b1");
    cache.clear();
    expect(await cache.get("b", async () => "b3")).toBe("b3");
  });
});
