// Creates API keys through the API, as a user would.
import { expect } from "vitest";
import { call, json } from "./http";

export type CreatedKey = { id: string; key: string; apiKey: Record<string, unknown> };

export async function createApiKeyFor(
  headers: Record<string, string>,
  body: { name: string; scopes: string[]; agentIds?: string[]; expiresInDays?: number },
): Promise<CreatedKey> {
  const res = await call("POST", "/v1/api-keys", { headers, body });
  const text = await res.text();
  expect(res.status, text).toBe(201);
  const parsed = JSON.parse(text) as { apiKey: { id: string }; key: string };
  return { id: parsed.apiKey.id, key: parsed.key, apiKey: parsed.apiKey };
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
export { json };
