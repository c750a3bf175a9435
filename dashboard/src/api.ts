// The gateway's public API, as the dashboard calls it: the credential (a JWT or an API key) lives
// in sessionStorage only (gone when the tab closes; never a cookie, so no request is sent with it
// unless this code adds it) and goes out as `Authorization: Bearer …`.
const CREDENTIAL_KEY = "webhost.credential";

export function credential(): string | null {
  return sessionStorage.getItem(CREDENTIAL_KEY);
}

export function setCredential(value: string) {
  sessionStorage.setItem(CREDENTIAL_KEY, value);
}

export function clearCredential() {
  sessionStorage.removeItem(CREDENTIAL_KEY);
}

/** An answer that was not a success: the problem+json the gateway sends (lib/errors.ts). */
export class ApiProblem extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | undefined;
  constructor(status: number, code: string, detail: string, requestId?: string) {
    super(detail);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

export function authHeaders(): Record<string, string> {
  const value = credential();
  return value ? { authorization: `Bearer ${value}` } : {};
}

export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["content-type"] = "application/json";
  // A retried click must not act twice (the gateway honours Idempotency-Key on every POST).
  if (method === "POST" && typeof crypto.randomUUID === "function") headers["idempotency-key"] = crypto.randomUUID();
  const init: RequestInit = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) init.body = JSON.stringify(body);
  if (signal) init.signal = signal;
  const res = await fetch(path, init);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const p = (parsed ?? {}) as { code?: string; detail?: string; title?: string; requestId?: string };
    const problem = new ApiProblem(
      res.status,
      p.code ?? `http_${res.status}`,
      p.detail ?? p.title ?? `${method} ${path} answered ${res.status}`,
      p.requestId,
    );
    if (res.status === 401) window.dispatchEvent(new CustomEvent("webhost:unauthenticated", { detail: problem }));
    throw problem;
  }
  return parsed as T;
}

export type Agent = {
  id: string;
  name: string;
  description: string | null;
  status: "active" | "disabled";
  activeDeploymentId: string | null;
  createdAt: number;
  updatedAt: number;
};

export type Deployment = {
  id: string;
  agentId: string;
  status: "deploying" | "ready" | "active" | "inactive" | "failed";
  activation: string;
  createdAt: number;
  activatedAt: number | null;
  errorMessage: string | null;
  moduleSha256: string;
};

export type StatsSummary = {
  invocations: number;
  errors: number;
  errorRate: number;
  errorsByCode: Array<{ code: string; count: number }>;
  durationMs: Record<"mean" | "min" | "max" | "p50" | "p95" | "p99", number | null>;
  tokens: { input: number; output: number };
  modelTokens: { input: number; output: number };
};

export type AgentStats = {
  window: string;
  from: number;
  totals: StatsSummary;
  deployments: Array<StatsSummary & { deploymentId: string }>;
};

export type UsageTotals = {
  requests: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  modelInputTokens: number;
  modelOutputTokens: number;
  egressRequests: number;
};

export type UsageReport = {
  periodKey: string;
  tier: string;
  usage: UsageTotals;
  limits: Record<string, number>;
  remaining: { invocations: number; agents?: number; deploysToday?: number };
  agents: Array<{ agentId: string; name: string | null; deleted: boolean; usage: UsageTotals }>;
};

export type SecretName = { name: string; createdAt: number; updatedAt: number };

export type ApiKey = {
  id: string;
  name: string;
  scopes: string[];
  agentIds: string[] | null;
  prefix: string;
  createdAt: number;
  expiresAt: number;
  lastUsedAt: number | null;
};

export type LogLine = {
  id: number;
  /** ISO 8601. */
  ts: string;
  level: string;
  message: string;
  deploymentId: string;
  requestId: string;
  runId?: string;
};
