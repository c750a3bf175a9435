// Shapes a response from a row by the response schema's own field list, so a response's fields are
// written once (in its schema) and never spread from a row: columns the schema does not name stay
// out, and the JSON's keys come in the schema's order.
import type { z } from "zod";

export function pickFields<S extends z.ZodObject>(schema: S, row: NoInfer<z.infer<S>>): z.infer<S> {
  const picked: Record<string, unknown> = {};
  for (const field of Object.keys(schema.shape)) picked[field] = (row as Record<string, unknown>)[field];
  return picked as z.infer<S>;
}
