ALTER TABLE `deployment_artifacts` ADD `storage` text DEFAULT 'd1' NOT NULL;--> statement-breakpoint
ALTER TABLE `deployment_artifacts` ADD `object_key` text;--> statement-breakpoint
ALTER TABLE `deployment_artifacts` ADD `module_count` integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE `deployments` ADD `smoke_test` text;