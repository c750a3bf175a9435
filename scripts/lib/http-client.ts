// A small HTTP client for talking to the gateway as any client would: a base URL, an optional
// bearer token, JSON bodies, and answers read either as a Response or as { status, headers, data }.
// Web-platform code only; the transport is `fetch`, or any function with its shape (the
// Workers-runtime tests pass the worker's own fetch handler).

export type RequestOptions = {
  /** Sent as JSON with `content-type: application/json` (unless a content-type is given). */
  body?: unknown;
  /** Sent as is (set content-type yourself). */
  rawBody?: BodyInit;
  headers?: Record<string, string>;
  /** Overrides the client's token for this request. */
  token?: string;
  signal?: AbortSignal;
};

export type JsonAnswer<T = any> = { status: number; headers: Headers; data: T };

export type HttpClient = {
  readonly baseUrl: string;
  request(method: string, path: string, options?: RequestOptions): Promise<Response>;
  /** The answer's body parsed as JSON (left as text when it is not JSON). */
  json<T = any>(method: string, path: string, body?: unknown, options?: RequestOptions): Promise<JsonAnswer<T>>;
};

export type HttpClientOptions = {
  baseUrl: string;
  /** Sent as `authorization: Bearer <token>`. */
  token?: string;
  /** Abort each request after this long (default: no limit). */
  timeoutMs?: number;
  fetch?: (request: Request) => Promise<Response>;
};

export function httpClient(options: HttpClientOptions): HttpClient {
  const send = options.fetch ?? ((request: Request) => fetch(request));

  async function request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const headers = new Headers();
    const token = opts.token ?? options.token;
    if (token) headers.set("authorization", `Bearer ${token}`);
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers.set(k, v);
    let body = opts.rawBody;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
    }
    const signal = opts.signal ?? (options.timeoutMs ? AbortSignal.timeout(options.timeoutMs) : undefined);
    return send(new Request(`${options.baseUrl}${path}`, { method, headers, body, signal }));
  }

  async function json<T = any>(
    method: string,
    path: string,
    body?: unknown,
    opts: RequestOptions = {},
  ): Promise<JsonAnswer<T>> {
    const res = await request(method, path, { ...opts, body });
    const text = await res.text();
    let data: any;
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
    return { status: res.status, headers: res.headers, data };
  }

  return { baseUrl: options.baseUrl, request, json };
}
