// Agent secret request and response schemas. Responses carry names and times only: there is no
// schema anywhere that could carry a secret value back out.
import { z } from "@hono/zod-openapi";
import {
  MAX_SECRET_VALUE_BYTES,
  type SecretMetadata,
  secretNameProblem,
  secretValueProblem,
} from "../../../services/secrets/secrets";
import { AgentIdParam } from "../../openapi-shared";

export const SecretName = z
  .string()
  .superRefine((name, ctx) => {
    const problem = secretNameProblem(name);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .openapi({
    param: { name: "name", in: "path" },
    pattern: "^[A-Z_][A-Z0-9_]{0,63}$",
    example: "OPENAI_API_KEY",
    description: "Environment-variable style; platform names (TELEMETRY, TELEMETRY_SECRET, USER_ID, …) are refused",
  });

export const SecretParams = AgentIdParam.extend({ name: SecretName });

export const SecretValueBody = z.strictObject({
  value: z
    .string()
    .superRefine((value, ctx) => {
      const problem = secretValueProblem(value);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .openapi({
      minLength: 1,
      // A string longer than this many characters is always longer than this many bytes.
      maxLength: MAX_SECRET_VALUE_BYTES,
      description: `1 to ${MAX_SECRET_VALUE_BYTES} bytes (UTF-8; a character can take up to 4); write-only. To clear a secret, delete it.`,
    }),
});

export const SecretSchema = z
  .object({
    name: z.string(),
    createdAt: z.number().int().openapi({ description: "ms since epoch" }),
    updatedAt: z.number().int().openapi({ description: "ms since epoch of the last PUT" }),
  })
  .openapi("Secret");

export function toSecretResponse(s: SecretMetadata): z.infer<typeof SecretSchema> {
  return { name: s.name, createdAt: s.createdAt, updatedAt: s.updatedAt };
}
