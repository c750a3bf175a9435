// Calls the gateway exactly as a client would, through the worker's own fetch handler.
import { exports } from "cloudflare:workers";

export type CallOptions = { headers?: Record<string, string>; body?: unknown; rawBody?: BodyInit };

export async function call(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
  const headers = new Headers(opts.headers);
  let body: BodyInit | undefined = opts.rawBody;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  return exports.default.fetch(new Request(`http://gateway.test${path}`, { method, headers, body }));
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
