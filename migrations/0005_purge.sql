ALTER TABLE `agents` ADD `purged_at` integer;--> statement-breakpoint
CREATE INDEX `agents_purge_due_idx` ON `agents` (`deleted_at`) WHERE "agents"."deleted_at" IS NOT NULL AND "agents"."purged_at" IS NULL;--> statement-breakpoint
ALTER TABLE `deployment_artifacts` ADD `purged_at` integer;--> statement-breakpoint
CREATE INDEX `deployments_artifact_idx` ON `deployments` (`artifact_id`);