// Client-side helpers for the e2e suite: tokens minted from the run's own key pair, plain
// HTTP against the dev server (scripts/lib), and checks every problem+json answer must pass.
import type { JWTPayload } from "jose";
import { expect, inject } from "vitest";
import { httpClient } from "../../scripts/lib/http-client.ts";
import { mintToken as signToken } from "../../scripts/lib/tokens.ts";
import type { E2eContext } from "./context.ts";

export const e2e: E2eContext = inject("e2e");
const client = httpClient({ baseUrl: e2e.baseUrl, timeoutMs: 15_000 });

export type User = { subject: string; token: string; headers: Record<string, string> };

type MintOptions = {
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number;
  issuer?: string;
  claims?: JWTPayload;
  /** Sign with this private JWK instead of the run's key (e.g. a key the server does not know). */
  signingJwk?: string;
};

export function mintToken(subject: string, opts: MintOptions = {}): Promise<string> {
  return signToken(opts.signingJwk ?? e2e.signingJwk, {
    subject,
    issuer: opts.issuer ?? e2e.issuer,
    expiresIn: opts.expiresIn ?? 600,
    claims: opts.claims,
  });
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
  const { user, headers, ...rest } = opts;
  return client.request(method, path, { ...rest, headers: { ...user?.headers, ...headers } });
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
