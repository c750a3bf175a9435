// A queue batch made by hand, so that what a consumer does with each message — ack, or retry and
// with which delay — is visible (`getQueueResult` from cloudflare:test does not report delays).
export type Outcome = { op: "ack" | "retry"; delaySeconds?: number };

export function handMadeBatch(queue: string, bodies: unknown[], attempts: number) {
  const outcomes = new Map<string, Outcome>();
  /** Every ack/retry call's message id, in order: a message settled twice shows up twice. */
  const settled: string[] = [];
  const messages = bodies.map((body) => {
    const id = `hand-${crypto.randomUUID()}`;
    const settle = (outcome: Outcome) => {
      settled.push(id);
      outcomes.set(id, outcome);
    };
    return {
      id,
      timestamp: new Date(),
      attempts,
      body,
      ack: () => settle({ op: "ack" }),
      retry: (o?: { delaySeconds?: number }) => settle({ op: "retry", delaySeconds: o?.delaySeconds }),
    };
  });
  const batch = {
    queue,
    messages,
    ackAll: () => {
      for (const m of messages) m.ack();
    },
    retryAll: (o?: { delaySeconds?: number }) => {
      for (const m of messages) m.retry(o);
    },
  } as unknown as MessageBatch<unknown>;
  return { batch, outcomes, settled, ids: messages.map((m) => m.id) };
}
