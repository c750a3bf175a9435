// Sessions: schemas for the OpenAPI document and the answers (docs/api.md, "Sessions").
import { z } from "@hono/zod-openapi";
import type { AppContext } from "../../../app";
import type { SessionDeps } from "../../../services/sessions/sessions";
import type { SessionView } from "../../../services/sessions/types";

export const SessionSchema = z
  .object({
    id: z.string().openapi({
      description: "The session id: `ses_…` when made by POST, else the invoke/v1 request's `sessionId`",
      example: "ses_01jd0000000000000000000000",
    }),
    agentId: z.string(),
    deploymentId: z.string().openapi({ description: "The deployment every turn of this session goes to (its pin)" }),
    createdAt: z.number().int().openapi({ description: "ms since epoch" }),
    lastUsedAt: z.number().int().openapi({ description: "ms since epoch: when its last turn started or ended" }),
    expiresAt: z
      .number()
      .int()
      .openapi({ description: "ms since epoch: when the session ends unless a turn comes first (idle TTL)" }),
    turns: z.number().int().openapi({ description: "turns that reached the agent" }),
    busy: z.boolean().openapi({ description: "a turn is running now (another one is 409 session_busy)" }),
  })
  .openapi("Session");

export const SessionEnvelope = z.object({ session: SessionSchema }).openapi("SessionEnvelope");

export const SessionParams = z.object({
  agentId: z
    .string()
    .max(64)
    .openapi({ param: { name: "agentId", in: "path" }, example: "agt_01jd0000000000000000000000" }),
  sessionId: z
    .string()
    .min(1)
    .max(200, "a session id has at most 200 characters")
    .openapi({ param: { name: "sessionId", in: "path" }, example: "ses_01jd0000000000000000000000" }),
});

export function toSessionResponse(s: SessionView): z.infer<typeof SessionSchema> {
  return {
    id: s.id,
    agentId: s.agentId,
    deploymentId: s.deploymentId,
    createdAt: s.createdAt,
    lastUsedAt: s.lastUsedAt,
    expiresAt: s.expiresAt,
    turns: s.turns,
    busy: s.busy,
  };
}

export function sessionDeps(c: AppContext): SessionDeps {
  const services = c.var.services;
  return {
    db: services.db,
    userId: c.var.userId,
    sessions: services.sessions,
    tierLimits: services.tierLimits,
    waitUntil: services.waitUntil,
  };
}
