CREATE TABLE `agent_secrets` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`agent_id` text NOT NULL,
	`name` text NOT NULL,
	`ciphertext` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`agent_id`) REFERENCES `agents`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `agent_secrets_agent_name_uq` ON `agent_secrets` (`agent_id`,`name`);--> statement-breakpoint
CREATE TABLE `agents` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`name` text NOT NULL,
	`description` text,
	`status` text DEFAULT 'active' NOT NULL,
	`active_deployment_id` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`deleted_at` integer,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `agents_user_name_live_uq` ON `agents` (`user_id`,`name`) WHERE "agents"."deleted_at" IS NULL;--> statement-breakpoint
CREATE INDEX `agents_user_id_idx` ON `agents` (`user_id`,`id`);--> statement-breakpoint
CREATE TABLE `audit_log` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`actor` text NOT NULL,
	`action` text NOT NULL,
	`target_type` text NOT NULL,
	`target_id` text NOT NULL,
	`details` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `audit_log_user_created_idx` ON `audit_log` (`user_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `billing_usage` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`period_key` text NOT NULL,
	`agent_id` text NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	`errors` integer DEFAULT 0 NOT NULL,
	`duration_ms_total` integer DEFAULT 0 NOT NULL,
	`bytes_in` integer DEFAULT 0 NOT NULL,
	`bytes_out` integer DEFAULT 0 NOT NULL,
	`input_tokens` integer DEFAULT 0 NOT NULL,
	`output_tokens` integer DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `billing_usage_user_period_agent_uq` ON `billing_usage` (`user_id`,`period_key`,`agent_id`);--> statement-breakpoint
CREATE TABLE `deployment_artifacts` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`sha256` text NOT NULL,
	`module_code` text NOT NULL,
	`size_bytes` integer NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `deployment_artifacts_user_sha_uq` ON `deployment_artifacts` (`user_id`,`sha256`);--> statement-breakpoint
CREATE TABLE `deployments` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`agent_id` text NOT NULL,
	`status` text NOT NULL,
	`runtime_provider` text NOT NULL,
	`compatibility_date` text NOT NULL,
	`invoke_path` text NOT NULL,
	`main_module_name` text NOT NULL,
	`artifact_id` text NOT NULL,
	`module_sha256` text NOT NULL,
	`telemetry_secret_ciphertext` text NOT NULL,
	`secrets_snapshot_ciphertext` text,
	`script_name` text NOT NULL,
	`error_message` text,
	`claimed_at` integer,
	`activated_at` integer,
	`first_activated_at` integer,
	`script_removed_at` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`agent_id`) REFERENCES `agents`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`artifact_id`) REFERENCES `deployment_artifacts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `deployments_agent_created_idx` ON `deployments` (`agent_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `deployments_user_created_idx` ON `deployments` (`user_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `deployments_status_created_idx` ON `deployments` (`status`,`created_at`);--> statement-breakpoint
CREATE TABLE `metrics_events` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`agent_id` text NOT NULL,
	`deployment_id` text NOT NULL,
	`source` text NOT NULL,
	`dedupe_key` text NOT NULL,
	`event_id` text,
	`trace_id` text,
	`runtime_provider` text NOT NULL,
	`kind` text NOT NULL,
	`ts` integer NOT NULL,
	`duration_ms` integer,
	`status` text,
	`error_code` text,
	`input_tokens` integer,
	`output_tokens` integer,
	`bytes_in` integer,
	`bytes_out` integer,
	`streaming` integer,
	`received_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `metrics_events_dedupe_uq` ON `metrics_events` (`deployment_id`,`source`,`dedupe_key`);--> statement-breakpoint
CREATE INDEX `metrics_events_agent_ts_idx` ON `metrics_events` (`agent_id`,`ts`);--> statement-breakpoint
CREATE INDEX `metrics_events_user_ts_idx` ON `metrics_events` (`user_id`,`ts`);--> statement-breakpoint
CREATE TABLE `subscriptions` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`tier` text NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `subscriptions_user_status_idx` ON `subscriptions` (`user_id`,`status`);--> statement-breakpoint
CREATE TABLE `users` (
	`id` text PRIMARY KEY NOT NULL,
	`auth_subject` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `users_auth_subject_uq` ON `users` (`auth_subject`);