// Calls the gateway with a modified environment (e.g. a different AUTH_* or TIER_LIMITS), for
// tests that need configuration other than vitest.config.ts gives everyone.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
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
  const res = await worker.fetch(request, { ...env, ...overrides } as typeof env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
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
