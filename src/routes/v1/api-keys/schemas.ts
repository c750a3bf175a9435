// API key request and response schemas (one source for validation and the OpenAPI document).
import { z } from "@hono/zod-openapi";
import { API_KEY_SCOPES } from "../../../auth/principal";
import type { ApiKeyRow } from "../../../db/schema";

export const ApiKeySchema = z
  .object({
    id: z.string(),
    name: z.string(),
    scopes: z.array(z.enum(API_KEY_SCOPES)),
    agentIds: z.array(z.string()).nullable().openapi({ description: "null: every agent of yours" }),
    prefix: z.string().openapi({ description: "The key's first characters, to recognise it", example: "whk_3kT9aQ2x" }),
    createdAt: z.number().int(),
    expiresAt: z.number().int(),
    lastUsedAt: z.number().int().nullable().openapi({ description: "Updated at most once a minute" }),
  })
  .openapi("ApiKey");

export const CreateApiKeyBody = z.strictObject({
  name: z.string().trim().min(1, "name must not be empty").max(100, "name must be at most 100 characters"),
  scopes: z
    .array(z.enum(API_KEY_SCOPES, { error: `each scope is one of ${API_KEY_SCOPES.join(", ")}` }))
    .min(1, "give at least one scope"),
  agentIds: z.array(z.string().max(64)).min(1, "omit agentIds for every agent").max(100).optional().openapi({
    description: "Agents of yours the key may act on (an id you do not own is 400); omit it for every agent",
  }),
  expiresInDays: z.number().int("expiresInDays must be a whole number").min(1).max(365).default(90),
});

export const ApiKeyIdParam = z.object({
  keyId: z
    .string()
    .max(64)
    .openapi({ param: { name: "keyId", in: "path" }, example: "key_01jd0000000000000000000000" }),
});

export function toApiKeyResponse(row: ApiKeyRow): z.infer<typeof ApiKeySchema> {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes as z.infer<typeof ApiKeySchema>["scopes"],
    agentIds: row.agentIds ?? null,
    prefix: row.prefix,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    lastUsedAt: row.lastUsedAt,
  };
}
