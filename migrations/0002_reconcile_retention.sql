CREATE TABLE `usage_reconcile_state` (
	`id` text PRIMARY KEY NOT NULL,
	`event_rowid` integer DEFAULT 0 NOT NULL,
	`cursor_user_id` text,
	`cursor_period_key` text,
	`cursor_agent_id` text,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `usage_verified_totals` (
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
	`dirty` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`user_id`, `period_key`, `agent_id`)
);
--> statement-breakpoint
CREATE INDEX `usage_verified_totals_dirty_idx` ON `usage_verified_totals` (`user_id`,`period_key`,`agent_id`) WHERE dirty = 1;--> statement-breakpoint
CREATE INDEX `deployments_live_script_idx` ON `deployments` (`status`,`agent_id`) WHERE script_removed_at IS NULL;