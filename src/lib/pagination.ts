// Opaque cursors for id-ordered lists: base64url of the last id on the page.
import { ApiError } from "./errors";

export function encodeCursor(lastId: string): string {
  return btoa(lastId).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function decodeCursor(cursor: string, idPattern: RegExp): string {
  let decoded: string;
  try {
    decoded = atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    throw new ApiError("invalid_cursor", "the cursor is not one this API returned");
  }
  if (!idPattern.test(decoded)) throw new ApiError("invalid_cursor", "the cursor is not one this API returned");
  return decoded;
}

/** `limit` query parameter: an integer in [1, max]; absent means `fallback`. */
export function limitParam(z: typeof import("@hono/zod-openapi").z, fallback: number, max: number) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return fallback;
      if (!/^\d+$/.test(v)) {
        ctx.addIssue({ code: "custom", message: `limit must be an integer between 1 and ${max}` });
        return z.NEVER;
      }
      const n = Number(v);
      if (n < 1 || n > max) {
        ctx.addIssue({ code: "custom", message: `limit must be an integer between 1 and ${max}` });
        return z.NEVER;
      }
      return n;
    })
    .openapi({ param: { name: "limit", in: "query" }, type: "integer", minimum: 1, maximum: max, default: fallback });
}

/** `cursor` query parameter: the opaque value a previous page returned as `nextCursor`. */
export function cursorParam(z: typeof import("@hono/zod-openapi").z) {
  return z
    .string()
    .max(200)
    .optional()
    .openapi({
      param: { name: "cursor", in: "query" },
      description:
        "Opaque: pass back the `nextCursor` of the previous page unchanged. Any other value is 400 invalid_cursor.",
    });
}
