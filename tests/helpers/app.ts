// Calls the gateway with a modified environment (e.g. a different AUTH_* or TIER_LIMITS), for
// tests that need configuration other than vitest.config.ts gives everyone.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import worker from "../../src/index";

export async function callWithEnv(
  overrides: Record<string, unknown>,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: unknown; rawBody?: BodyInit } = {},
): Promise<Response> {
  const headers = new Headers(opts.headers);
  if (opts.body !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json");
  const request = new Request(`http://gateway.test${path}`, {
    method,
    headers,
    body: opts.body === undefined ? opts.rawBody : JSON.stringify(opts.body),
  });
  const ctx = createExecutionContext();
  const res = await worker.fetch(request, envWith(overrides), ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** The gateway's env with `overrides`, which the runs' Durable Objects see too. */
export function envWith(overrides: Record<string, unknown>): typeof env {
  const overridden = { ...env, ...overrides } as typeof env;
  // A test that hands in its own RUNS gets exactly that.
  if (!("RUNS" in overrides)) overridden.RUNS = runsSharing(overridden);
  return overridden;
}

/**
 * The RUNS namespace, its objects given the overridden env before each call: a run's Durable Object
 * makes the run's call with its own env, and in production the gateway and its Durable Objects
 * share one. (Only what compose.ts uses: idFromName and get.)
 */
function runsSharing(overridden: typeof env): typeof env.RUNS {
  const real = env.RUNS;
  const stubOf = (id: DurableObjectId) => {
    const stub = real.get(id);
    return new Proxy(
      {},
      {
        get: (_, method) =>
          // Not a thenable: `await`ing the stub must not call `then` on the object.
          method === "then"
            ? undefined
            : async (...args: unknown[]) => {
                await runInDurableObject(stub, (instance) => {
                  (instance as unknown as { env: unknown }).env = overridden;
                });
                // Called on the stub itself: an RPC method has no `apply`.
                return (stub as unknown as Record<PropertyKey, (...a: unknown[]) => unknown>)[method]!(...args);
              },
      },
    );
  };
  return { idFromName: (name: string) => real.idFromName(name), get: stubOf } as unknown as typeof env.RUNS;
}

/** A stand-in for a queue binding that records what is sent (for "enqueued nothing" checks). */
export function recordingQueue(): Queue & { sent: unknown[] } {
  const sent: unknown[] = [];
  return {
    sent,
    async send(body: unknown) {
      sent.push(body);
    },
    async sendBatch(messages: Iterable<MessageSendRequest>) {
      for (const m of messages) sent.push(m.body);
    },
  } as unknown as Queue & { sent: unknown[] };
}
