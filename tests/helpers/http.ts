// Calls the gateway exactly as a client would (scripts/lib/http-client.ts), through the worker's
// own fetch handler.
import { exports } from "cloudflare:workers";
import { httpClient } from "../../scripts/lib/http-client.ts";

export type CallOptions = { headers?: Record<string, string>; body?: unknown; rawBody?: BodyInit };

const gateway = httpClient({ baseUrl: "http://gateway.test", fetch: (request) => exports.default.fetch(request) });

export function call(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
  return gateway.request(method, path, opts);
}

export async function json<T = any>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

export async function expectProblem(res: Response, status: number, code: string): Promise<any> {
  const text = await res.text();
  const ct = res.headers.get("content-type") ?? "";
  if (res.status !== status || !ct.startsWith("application/problem+json")) {
    throw new Error(`expected ${status} problem ${code}, got ${res.status} ${ct}: ${text}`);
  }
  const body = JSON.parse(text);
  if (body.code !== code) throw new Error(`expected code ${code}, got ${body.code}: ${text}`);
  if (!body.requestId || res.headers.get("x-request-id") !== body.requestId) {
    throw new Error(`problem lacks a requestId matching x-request-id: ${text}`);
  }
  return body;
}
