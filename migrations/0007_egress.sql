CREATE TABLE `agent_egress_policies` (
	`agent_id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`mode` text NOT NULL,
	`allow` text DEFAULT '[]' NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `billing_usage` ADD `model_input_tokens` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `billing_usage` ADD `model_output_tokens` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `billing_usage` ADD `egress_requests` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `metrics_events` ADD `host` text;--> statement-breakpoint
ALTER TABLE `metrics_events` ADD `provider` text;--> statement-breakpoint
ALTER TABLE `metrics_events` ADD `model` text;--> statement-breakpoint
ALTER TABLE `usage_verified_totals` ADD `model_input_tokens` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `usage_verified_totals` ADD `model_output_tokens` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `usage_verified_totals` ADD `egress_requests` integer DEFAULT 0 NOT NULL;