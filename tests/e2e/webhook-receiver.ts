// A webhook receiver on 127.0.0.1 for the e2e suite (reachable because the dev server runs with
// ENVIRONMENT=development). Each path answers a fixed status: /ok 204, /fail 500, /gone 410;
// every request is recorded with its arrival time, headers and exact body. The Standard Webhooks
// check below is written from the specification with node:crypto, independently of src/.
import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";

export type ReceivedWebhook = { path: string; at: number; headers: Record<string, string | undefined>; body: string };

export type WebhookReceiver = {
  baseUrl: string;
  received: ReceivedWebhook[];
  stop(): Promise<void>;
};

const STATUS_BY_PATH: Record<string, number> = { "/ok": 204, "/fail": 500, "/gone": 410 };

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0]!;
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let offset = 0;
      for (const c of chunks) {
        bytes.set(c, offset);
        offset += c.length;
      }
      received.push({ path, at: Date.now(), headers: req.headers, body: new TextDecoder().decode(bytes) });
      const status = STATUS_BY_PATH[path.replace(/^\/[^/]+(?=\/)/, "")] ?? 404;
      res.writeHead(status);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    received,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Standard Webhooks verification: the key is the base64-decoded part of the secret after
 * `whsec_`; the expected signature is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"));
 * the header may hold several space-separated signatures. Returns how many match (0 = reject).
 * A timestamp more than 5 minutes away from now is rejected too (replay protection).
 */
export function verifiedSignatures(secret: string, message: ReceivedWebhook, now = Date.now()): number {
  const id = message.headers["webhook-id"];
  const timestamp = message.headers["webhook-timestamp"];
  const header = message.headers["webhook-signature"];
  if (!id || !timestamp || !header) return 0;
  if (Math.abs(now / 1000 - Number(timestamp)) > 300) return 0;
  const key = Uint8Array.from(atob(secret.slice("whsec_".length)), (c) => c.charCodeAt(0));
  const expected = `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${message.body}`).digest("base64")}`;
  return header.split(" ").filter((signature) => signature === expected).length;
}
