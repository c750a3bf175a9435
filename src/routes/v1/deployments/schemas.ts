// Deployment request and response schemas (one source for validation and the OpenAPI document).
import { z } from "@hono/zod-openapi";
import { DEPLOYMENT_STATUSES } from "../../../db/schema";
import { pickFields } from "../../../lib/pick-fields";
import { RUNTIME_PROVIDERS } from "../../../runtime/types";
import {
  DEFAULT_COMPATIBILITY_DATE,
  DEFAULT_INVOKE_PATH,
  DEFAULT_MAIN_MODULE_NAME,
  MODULE_CODE_MAX_BYTES,
} from "../../../services/deployments/defaults";
import type { DeploymentRow } from "../../../services/deployments/deployments";

const CompatibilityDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, "compatibilityDate must be YYYY-MM-DD")
  .refine((v) => {
    const ms = Date.parse(`${v}T00:00:00Z`);
    return Number.isFinite(ms) && new Date(ms).toISOString().startsWith(v);
  }, "compatibilityDate must be a real calendar date")
  .refine((v) => v <= new Date().toISOString().slice(0, 10), "compatibilityDate must not be in the future")
  .openapi({
    format: "date",
    description: "The Workers compatibility date: YYYY-MM-DD, a real calendar date, not after today (UTC)",
    example: DEFAULT_COMPATIBILITY_DATE,
  });

const InvokePath = z
  .string()
  .max(200, "invokePath must be at most 200 characters")
  .regex(
    /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/,
    "invokePath must start with '/' and hold only URL path characters (no query or fragment)",
  )
  .openapi({ example: DEFAULT_INVOKE_PATH });

const MainModuleName = z
  .string()
  .max(128, "mainModuleName must be at most 128 characters")
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*\.m?js$/, "mainModuleName must be a file name ending in .js or .mjs")
  .openapi({ example: DEFAULT_MAIN_MODULE_NAME });

export const DeployBody = z.strictObject({
  moduleCode: z
    .string()
    .min(1, "moduleCode must not be empty")
    .optional()
    .openapi({
      description: `An ES module (UTF-8, at most ${MODULE_CODE_MAX_BYTES} bytes) whose default export has fetch(). Omit it to deploy the built-in template agent.`,
    }),
  runtimeProvider: z
    .string()
    .max(64)
    .optional()
    .openapi({ enum: [...RUNTIME_PROVIDERS], description: "Only `cloudflare` is available" }),
  compatibilityDate: CompatibilityDate.optional(),
  invokePath: InvokePath.optional(),
  mainModuleName: MainModuleName.optional(),
});

export const DeploymentSchema = z
  .object({
    id: z.string(),
    agentId: z.string(),
    status: z.enum(DEPLOYMENT_STATUSES),
    runtimeProvider: z.string(),
    compatibilityDate: z.string(),
    invokePath: z.string(),
    mainModuleName: z.string(),
    moduleSha256: z.string(),
    createdAt: z.number().int().openapi({ description: "ms since epoch" }),
    updatedAt: z.number().int(),
    activatedAt: z.number().int().nullable().openapi({ description: "when it last became active" }),
    errorMessage: z.string().nullable(),
  })
  .openapi("Deployment");

export function toDeploymentResponse(row: DeploymentRow): z.infer<typeof DeploymentSchema> {
  return pickFields(DeploymentSchema, row);
}

export const DeploymentEnvelope = z.object({ deployment: DeploymentSchema });

export const DeploymentParams = z.object({
  agentId: z
    .string()
    .max(64)
    .openapi({ param: { name: "agentId", in: "path" }, example: "agt_01jd0000000000000000000000" }),
  deploymentId: z
    .string()
    .max(64)
    .openapi({ param: { name: "deploymentId", in: "path" }, example: "dep_01jd0000000000000000000000" }),
});
