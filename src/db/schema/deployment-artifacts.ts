// Immutable deployment code, content-addressed per user: redeploying the same bundle reuses the row.
// Two storages, both read: `d1` rows (made before bundles existed) hold one ES module in
// module_code; `r2` rows hold only metadata, and the bundle itself is the ARTIFACTS object named
// by object_key (its sha256, shared by every user who deploys the same bundle).
// A purge (services/cleanup/purge.ts) empties module_code and sets purged_at once only deployments
// of purged agents reference the row; deploying the same bundle again makes it live again.
import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
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
    /** The one ES module of a `d1` artifact; empty for `r2` artifacts. */
    moduleCode: text("module_code").notNull(),
    /** Decoded bytes of all modules. */
    sizeBytes: integer("size_bytes").notNull(),
    storage: text("storage", { enum: ["d1", "r2"] })
      .notNull()
      .default("d1"),
    /** The ARTIFACTS object key of an `r2` artifact. */
    objectKey: text("object_key"),
    moduleCount: integer("module_count").notNull().default(1),
    createdAt: createdAt(),
    purgedAt: integer("purged_at"),
    /**
     * When the cron removed a purged `r2` artifact's object from ARTIFACTS (or found another live
     * artifact still naming it, and let it be). Null while the object may still need removing.
     */
    objectRemovedAt: integer("object_removed_at"),
  },
  (t) => [
    uniqueIndex("deployment_artifacts_user_sha_uq").on(t.userId, t.sha256),
    // Objects are named by content, so artifacts of different users can share one: "does a live
    // artifact still name this object?" is asked by key.
    index("deployment_artifacts_object_key_idx").on(t.objectKey),
    // The purged r2 artifacts whose object may still be in the bucket: what the cron walks.
    index("deployment_artifacts_object_due_idx")
      .on(t.purgedAt)
      .where(sql`storage = 'r2' AND purged_at IS NOT NULL AND object_removed_at IS NULL`),
  ],
);
