// Client-side helpers for the e2e suite: tokens minted from the run's own key pair, plain
// fetch() against the dev server, and checks every problem+json answer must pass.
import { importJWK, type JWTPayload, SignJWT } from "jose";
import { expect, inject } from "vitest";
import type { E2eContext } from "./context";

export const e2e: E2eContext = inject("e2e");

export type User = { subject: string; token: string; headers: Record<string, string> };

type MintOptions = {
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number;
  issuer?: string;
  claims?: JWTPayload;
  /** Sign with this private JWK instead of the run's key (e.g. a key the server does not know). */
  signingJwk?: string;
};

export async function mintToken(subject: string, opts: MintOptions = {}): Promise<string> {
  const jwk = JSON.parse(opts.signingJwk ?? e2e.signingJwk) as { kid: string; alg: "ES256" };
  const key = await importJWK(jwk, jwk.alg);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...opts.claims })
    .setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, typ: "JWT" })
    .setSubject(subject)
    .setIssuer(opts.issuer ?? e2e.issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + (opts.expiresIn ?? 600))
    .sign(key);
}

let users = 0;
/** A user nobody else in this run has seen (the server creates its row on first sight). */
export async function newUser(label = "user"): Promise<User> {
  const subject = `e2e|${label}-${++users}-${crypto.randomUUID().slice(0, 8)}`;
  const token = await mintToken(subject);
  return { subject, token, headers: { authorization: `Bearer ${token}` } };
}

export type CallOptions = {
  user?: User;
  headers?: Record<string, string>;
  /** Sent as JSON with `content-type: application/json`. */
  body?: unknown;
  /** Sent as is (set content-type yourself). */
  rawBody?: BodyInit;
  signal?: AbortSignal;
};

/** One HTTP request to the dev server, as any client would send it. */
export function api(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
  const headers = new Headers(opts.user?.headers);
  for (const [k, v] of Object.entries(opts.headers ?? {})) headers.set(k, v);
  let body = opts.rawBody;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  return fetch(`${e2e.baseUrl}${path}`, {
    method,
    headers,
    body,
    signal: opts.signal ?? AbortSignal.timeout(15_000),
  });
}

/** The JSON body of a response that must have the given status. */
export async function expectJson<T = any>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${text}`);
  expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
  expect(res.headers.get("x-request-id")).toMatch(/^req_/);
  return JSON.parse(text) as T;
}

export type Problem = {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  requestId: string;
  errors?: Array<{ location: string; message: string }>;
};

/** Checks an RFC 9457 problem answer: status, code, and a requestId equal to x-request-id. */
export async function expectProblem(res: Response, status: number, code: string): Promise<Problem> {
  const text = await res.text();
  const type = res.headers.get("content-type") ?? "";
  if (res.status !== status || !type.startsWith("application/problem+json")) {
    throw new Error(`expected ${status} problem ${code}, got ${res.status} ${type}: ${text}`);
  }
  const problem = JSON.parse(text) as Problem;
  expect(problem).toMatchObject({ status, code });
  expect(problem.type).toMatch(/^https:\/\//);
  expect(problem.title).toEqual(expect.any(String));
  expect(problem.detail).toEqual(expect.any(String));
  expect(problem.requestId).toMatch(/^req_/);
  expect(res.headers.get("x-request-id")).toBe(problem.requestId);
  return problem;
}

/** Polls `probe` until it returns a value other than undefined (e.g. a deployment turning active). */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  { timeoutMs = 20_000, intervalMs = 100 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
