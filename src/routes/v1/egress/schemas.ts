// An agent's egress policy, as the API reads and writes it.
import { z } from "@hono/zod-openapi";
import { EGRESS_MODES, MAX_ALLOW_ENTRIES } from "../../../services/egress/policy";

export const EgressPolicyBody = z
  .strictObject({
    mode: z.enum(EGRESS_MODES).openapi({
      description:
        "`deny`: nothing (platform models included); `allowlist`: platform models and the hosts in `allow`; `open`: any public host (not on every tier)",
    }),
    allow: z
      .array(z.string().min(1).max(253))
      .max(MAX_ALLOW_ENTRIES)
      .default([])
      .openapi({
        description:
          "Host names the agent may reach (`api.example.com`, or `*.example.com` for its subdomains); no scheme, port or path",
        example: ["api.search.example"],
      }),
  })
  .openapi("EgressPolicyInput");

export const EgressPolicySchema = z
  .object({
    agentId: z.string(),
    mode: z.enum(EGRESS_MODES),
    allow: z.array(z.string()),
    updatedAt: z.number().int().nullable().openapi({ description: "Null: the default policy, never set" }),
  })
  .openapi("EgressPolicy");
