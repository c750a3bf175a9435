// The error a bad configuration value raises, and the one wording of its message. Whoever parses
// a var or secret throws it; the app's error handler turns it into a configuration_error problem
// (the detail is logged for the operator, never shown to the caller).

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** One failed check, as a zod issue carries it: which variable, and which rule it broke. */
export type ConfigIssue = { readonly path: readonly PropertyKey[]; readonly message: string };

/**
 * `invalid configuration: NAME: rule; NAME: rule`. Issues name the variable and the rule, never
 * the value (a secret may be among them).
 */
export function invalidConfiguration(detail: string | readonly ConfigIssue[]): ConfigError {
  const text =
    typeof detail === "string" ? detail : detail.map((i) => `${i.path.map(String).join(".")}: ${i.message}`).join("; ");
  return new ConfigError(`invalid configuration: ${text}`);
}
