// Shared column helpers: every table stores times as integer milliseconds since the epoch (UTC).
import { integer } from "drizzle-orm/sqlite-core";

export const createdAt = () => integer("created_at").notNull();
export const updatedAt = () => integer("updated_at").notNull();
