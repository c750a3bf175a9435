ALTER TABLE `deployment_artifacts` ADD `object_removed_at` integer;--> statement-breakpoint
CREATE INDEX `deployment_artifacts_object_key_idx` ON `deployment_artifacts` (`object_key`);--> statement-breakpoint
CREATE INDEX `deployment_artifacts_object_due_idx` ON `deployment_artifacts` (`purged_at`) WHERE storage = 'r2' AND purged_at IS NOT NULL AND object_removed_at IS NULL;