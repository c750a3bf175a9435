// Reading string vars and secrets: wrangler hands an unset-but-declared value over as "", which
// must mean "not set" (so a schema's default applies) rather than an invalid value.

/** For `z.preprocess`: a blank string becomes undefined; anything else passes through. */
export function blankToUndefined(value: unknown): unknown {
  return typeof value === "string" && value.trim() === "" ? undefined : value;
}
