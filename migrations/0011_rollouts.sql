CREATE TABLE `rollouts` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`agent_id` text NOT NULL,
	`candidate_deployment_id` text NOT NULL,
	`baseline_deployment_id` text NOT NULL,
	`status` text NOT NULL,
	`stages` text NOT NULL,
	`abort_on` text NOT NULL,
	`stage_index` integer DEFAULT 0 NOT NULL,
	`stage_started_at` integer NOT NULL,
	`end_reason` text,
	`ended_at` integer,
	`last_evaluation` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`agent_id`) REFERENCES `agents`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`candidate_deployment_id`) REFERENCES `deployments`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`baseline_deployment_id`) REFERENCES `deployments`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `rollouts_one_running_per_agent_uq` ON `rollouts` (`agent_id`) WHERE status = 'running';--> statement-breakpoint
CREATE INDEX `rollouts_running_updated_idx` ON `rollouts` (`updated_at`) WHERE status = 'running';--> statement-breakpoint
CREATE INDEX `rollouts_agent_created_idx` ON `rollouts` (`agent_id`,`created_at`);