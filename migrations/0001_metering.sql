ALTER TABLE `metrics_events` ADD `ingest_batch` text;--> statement-breakpoint
CREATE INDEX `metrics_events_ingest_batch_idx` ON `metrics_events` (`ingest_batch`);--> statement-breakpoint
CREATE INDEX `metrics_events_ts_idx` ON `metrics_events` (`ts`);