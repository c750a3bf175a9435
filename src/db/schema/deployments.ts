// Immutable deployment records. Only status, timestamps and error_message ever change (and the
// secrets snapshot, nulled when a deleted agent is purged).
// Invariant: status = 'active' exactly when agents.active_deployment_id names the row (a `ready`
// deployment, a manual deploy that passed its checks, is runnable but never named by the pointer).
import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { agents } from "./agents";
import { createdAt, updatedAt } from "./columns";
import { deploymentArtifacts } from "./deployment-artifacts";
import { users } from "./users";

export const DEPLOYMENT_STATUSES = ["deploying", "ready", "active", "inactive", "failed"] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];

/** How a deployment that passes its checks ends: `auto` takes the pointer, `manual` waits `ready`. */
export const DEPLOYMENT_ACTIVATIONS = ["auto", "manual"] as const;
export type DeploymentActivation = (typeof DEPLOYMENT_ACTIVATIONS)[number];

export const deployments = sqliteTable(
  "deployments",
  {
    id: text("id").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    agentId: text("agent_id")
      .notNull()
      .references(() => agents.id, { onDelete: "cascade" }),
    status: text("status", { enum: DEPLOYMENT_STATUSES }).notNull(),
    runtimeProvider: text("runtime_provider").notNull(),
    compatibilityDate: text("compatibility_date").notNull(),
    invokePath: text("invoke_path").notNull(),
    mainModuleName: text("main_module_name").notNull(),
    artifactId: text("artifact_id")
      .notNull()
      .references(() => deploymentArtifacts.id),
    moduleSha256: text("module_sha256").notNull(),
    // AES-256-GCM envelope of the 32-byte telemetry key; AAD binds it to this deployment.
    telemetrySecretCiphertext: text("telemetry_secret_ciphertext").notNull(),
    // AES-256-GCM envelope of the agent secrets (JSON name -> value) as they were at deploy time;
    // nulled by the purge once the agent has been deleted for DELETED_AGENT_GRACE_MS.
    secretsSnapshotCiphertext: text("secrets_snapshot_ciphertext"),
    // The runtime's name for the code (namespace script name); derived from the id.
    scriptName: text("script_name").notNull(),
    errorMessage: text("error_message"),
    // The deploy's smokeTest (JSON), run by the deploy job before the pointer moves; null for none.
    smokeTest: text("smoke_test"),
    // `manual`: the deploy job ends it `ready` instead of moving the pointer; activate makes it serve.
    activation: text("activation", { enum: DEPLOYMENT_ACTIVATIONS }).notNull().default("auto"),
    // Set by the queue consumer's conditional claim; a second delivery sees it and skips.
    claimedAt: integer("claimed_at"),
    activatedAt: integer("activated_at"),
    // First time this deployment went active: only such deployments may be rolled back to.
    firstActivatedAt: integer("first_activated_at"),
    // When the runtime copy of the script was removed (retention or agent deletion).
    scriptRemovedAt: integer("script_removed_at"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index("deployments_agent_created_idx").on(t.agentId, t.createdAt),
    index("deployments_user_created_idx").on(t.userId, t.createdAt),
    index("deployments_status_created_idx").on(t.status, t.createdAt),
    // Retention (services/cleanup): only deployments that still have a runtime script, by status
    // then agent, so it finds the agents with too many inactive or ready ones without reading the others.
    index("deployments_live_script_idx").on(t.status, t.agentId).where(sql`script_removed_at IS NULL`),
    // Which deployments reference an artifact: the purge keeps an artifact while any does.
    index("deployments_artifact_idx").on(t.artifactId),
  ],
);

export type DeploymentRow = typeof deployments.$inferSelect;
