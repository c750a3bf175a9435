// Agent request and response schemas (one source for validation and the OpenAPI document).
import { z } from "@hono/zod-openapi";
import type { AgentRow } from "../../../db/schema";

export const AGENT_NAME_MAX = 64;
export const AGENT_DESCRIPTION_MAX = 500;

export const AgentName = z
  .string()
  .trim()
  .min(1, "name must not be empty")
  .max(AGENT_NAME_MAX, `name must be at most ${AGENT_NAME_MAX} characters`)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9 _.-]*$/,
    "name may hold letters, digits, spaces, '-', '_' and '.', starting with a letter or digit",
  )
  .openapi({ example: "support-bot" });

export const AgentDescription = z
  .string()
  .max(AGENT_DESCRIPTION_MAX, `description must be at most ${AGENT_DESCRIPTION_MAX} characters`)
  .openapi({ example: "Answers billing questions" });

export const AgentSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    status: z.enum(["active", "disabled"]),
    activeDeploymentId: z.string().nullable(),
    createdAt: z.number().int().openapi({ description: "ms since epoch" }),
    updatedAt: z.number().int(),
  })
  .openapi("Agent");

export function toAgentResponse(row: AgentRow): z.infer<typeof AgentSchema> {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    status: row.status,
    activeDeploymentId: row.activeDeploymentId,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export const AgentEnvelope = z.object({ agent: AgentSchema });
