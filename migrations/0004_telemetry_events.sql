ALTER TABLE `billing_usage` ADD `telemetry_events` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
UPDATE `billing_usage` SET `telemetry_events` = (SELECT count(*) FROM `metrics_events` m WHERE m.`user_id` = `billing_usage`.`user_id` AND m.`agent_id` = `billing_usage`.`agent_id` AND m.`source` = 'telemetry' AND strftime('%Y-%m', m.`ts` / 1000, 'unixepoch') = `billing_usage`.`period_key`);
