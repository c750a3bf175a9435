// The caller's own tier limit on invoke bodies (`invokeBodyBytes`), applied after authentication
// and before the body is read or validated. The path-based body guard in front of it only caps
// invoke bodies at the largest tier's limit, since it runs before the caller is known.
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "../app";
import { createDb } from "../db/client";
import { ApiError } from "../lib/errors";
import { limitsForUser } from "../services/usage/user-tier";

export function invokeBodyLimit(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const { tier, limits } = await limitsForUser(createDb(c.env.DB), c.get("userId"), c.get("config").tierLimits);
    const maxSize = limits.invokeBodyBytes;
    return bodyLimit({
      maxSize,
      onError: () => {
        throw new ApiError("payload_too_large", `the ${tier} plan allows invoke bodies of ${maxSize} bytes`, {
          extra: { limit: "invokeBodyBytes", tier, limitBytes: maxSize },
        });
      },
    })(c, next);
  };
}
