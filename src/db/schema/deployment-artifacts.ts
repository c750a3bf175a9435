// Module code, content-addressed per user: redeploying the same bytes reuses the row. Immutable,
// except that the purge empties module_code (setting purged_at) once only deployments of purged
// agents reference it; deploying the same bytes again restores it (services/deployments/create.ts).
import { integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { createdAt } from "./columns";
import { users } from "./users";

export const deploymentArtifacts = sqliteTable(
  "deployment_artifacts",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    sha256: text("sha256").notNull(),
    moduleCode: text("module_code").notNull(),
    sizeBytes: integer("size_bytes").notNull(),
    createdAt: createdAt(),
    purgedAt: integer("purged_at"),
  },
  (t) => [uniqueIndex("deployment_artifacts_user_sha_uq").on(t.userId, t.sha256)],
);
