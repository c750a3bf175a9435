// Deployment request and response schemas (one source for validation and the OpenAPI document).
import { z } from "@hono/zod-openapi";
import { DEPLOYMENT_ACTIVATIONS, DEPLOYMENT_STATUSES } from "../../../db/schema";
import { pickFields } from "../../../lib/pick-fields";
import { MODULE_TYPES, RUNTIME_PROVIDERS } from "../../../runtime/types";
import { ALLOWED_COMPATIBILITY_FLAGS } from "../../../runtime/user-script";
import {
  DEFAULT_COMPATIBILITY_DATE,
  DEFAULT_INVOKE_PATH,
  DEFAULT_MAIN_MODULE_NAME,
  MAX_BUNDLE_MODULES,
  MODULE_NAME_MAX_CHARS,
} from "../../../services/deployments/defaults";
import type { DeploymentRow } from "../../../services/deployments/deployments";
import { InvokeRequestSchema } from "../invoke/schemas";

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
  .max(MODULE_NAME_MAX_CHARS, `mainModuleName must be at most ${MODULE_NAME_MAX_CHARS} characters`)
  .openapi({
    example: DEFAULT_MAIN_MODULE_NAME,
    description: `The main module's name (an \`esm\` module of the bundle); default \`${DEFAULT_MAIN_MODULE_NAME}\` for moduleCode`,
  });

const BundleModule = z
  .strictObject({
    name: z.string().max(MODULE_NAME_MAX_CHARS).openapi({
      description: "A relative path (e.g. `lib/llm.js`): no leading `/`, no `..`, unique in the bundle",
    }),
    type: z.enum(MODULE_TYPES).openapi({
      description:
        "`esm` ES module, `cjs` CommonJS, `text` (imported as a string), `data` (ArrayBuffer), `json`, `wasm` (WebAssembly.Module)",
    }),
    content: z.string(),
    encoding: z
      .enum(["utf8", "base64"])
      .optional()
      .openapi({ description: "`utf8` (default) or `base64`; `data` and `wasm` must be base64" }),
  })
  .openapi("BundleModule");

const SmokeTest = z
  .strictObject({
    request: InvokeRequestSchema,
    expectStatus: z.number().int().min(100).max(599).optional().openapi({ description: "Default 200" }),
    timeoutMs: z.number().int().min(100).max(60_000).optional().openapi({ description: "Default 10000" }),
  })
  .openapi("SmokeTest");

export const DeployBody = z.strictObject({
  moduleCode: z.string().min(1, "moduleCode must not be empty").optional().openapi({
    description:
      "One ES module whose default export has fetch() (shorthand for a one-module bundle). Omit it and modules to deploy the built-in template agent.",
  }),
  runtimeProvider: z
    .string()
    .max(64)
    .optional()
    .openapi({
      enum: [...RUNTIME_PROVIDERS],
      description:
        "`cloudflare` (default) or `agentcore` (only when the gateway is configured for it; docs/runtimes.md)",
    }),
  compatibilityDate: CompatibilityDate.optional(),
  invokePath: InvokePath.optional(),
  mainModuleName: MainModuleName.optional(),
  modules: z
    .array(BundleModule)
    .max(MAX_BUNDLE_MODULES * 2)
    .optional()
    .openapi({
      description: `A bundle of modules (at most ${MAX_BUNDLE_MODULES}; decoded total at most the plan's \`bundleBytes\`). Use instead of moduleCode; needs mainModuleName.`,
    }),
  compatibilityFlags: z
    .array(z.string().max(64))
    .max(16)
    .optional()
    .openapi({ description: `Allowed: ${ALLOWED_COMPATIBILITY_FLAGS.join(", ")}` }),
  smokeTest: SmokeTest.optional().openapi({
    description: "Invoke the new deployment once before it becomes active (or `ready`); it does only if this passes",
  }),
  activation: z.enum(DEPLOYMENT_ACTIVATIONS).optional().openapi({
    description:
      "`auto` (default): once its checks pass the deployment becomes active and serves. `manual`: it ends `ready` (runnable through the `x-webhost-deployment` header of invoke, not serving) until you activate it",
  }),
});

export const DeploymentSchema = z
  .object({
    id: z.string(),
    agentId: z.string(),
    status: z.enum(DEPLOYMENT_STATUSES).openapi({
      description:
        "`deploying`; `ready` (a manual deploy that passed its checks: invocable by id, not serving); `active` (the one the agent serves); `inactive`; `failed`",
    }),
    activation: z.enum(DEPLOYMENT_ACTIVATIONS).openapi({ description: "As requested at deploy: `auto` or `manual`" }),
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
