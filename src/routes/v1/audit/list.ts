import { z } from "@hono/zod-openapi";
import type { App } from "../../../app";
import { cursorParam, decodeCursor, encodeCursor, limitParam } from "../../../lib/pagination";
import { type AuditRow, listAuditEntries } from "../../../services/audit/audit";
import { commonProblems } from "../../openapi-shared";
import { userRoute } from "../../route-policy";

const AuditEntrySchema = z
  .object({
    id: z.string(),
    actor: z.string().openapi({
      description:
        "`user:<id>` for API calls, `operator:<tool>` for operator commands, `system:<task>` for the gateway's own decisions (rollouts)",
    }),
    action: z.string().openapi({ example: "secret.set" }),
    targetType: z.string(),
    targetId: z.string(),
    details: z.record(z.string(), z.unknown()).nullable(),
    createdAt: z.number().int().openapi({ description: "ms since epoch" }),
  })
  .openapi("AuditEntry");

const route = userRoute(
  {
    method: "get",
    path: "/v1/audit",
    operationId: "listAuditEntries",
    tags: ["audit"],
    summary: "Your audit log (secret and tier changes), newest first",
    request: {
      query: z.object({
        limit: limitParam(z, 50, 200),
        cursor: cursorParam(z),
      }),
    },
    responses: {
      200: {
        description: "A page of audit entries",
        content: {
          "application/json": {
            schema: z.object({ entries: z.array(AuditEntrySchema), nextCursor: z.string().nullable() }),
          },
        },
      },
      ...commonProblems,
    },
  },
  { scope: "jwt" },
);

function toAuditResponse(row: AuditRow): z.infer<typeof AuditEntrySchema> {
  return {
    id: row.id,
    actor: row.actor,
    action: row.action,
    targetType: row.targetType,
    targetId: row.targetId,
    details: row.details ?? null,
    createdAt: row.createdAt,
  };
}

export function registerListAudit(app: App) {
  app.openapi(route, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    const beforeId = cursor ? decodeCursor(cursor, /^aud_[0-9a-z]{26}$/) : undefined;
    const { rows, hasMore } = await listAuditEntries(
      { db: c.var.services.db, userId: c.var.userId },
      { limit, beforeId },
    );
    const last = rows.at(-1);
    return c.json(
      { entries: rows.map(toAuditResponse), nextCursor: hasMore && last ? encodeCursor(last.id) : null },
      200,
    );
  });
}
