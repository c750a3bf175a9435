// Request body limit for the deploy route (bodyLimitFor in routes/index.ts).
import { MODULE_CODE_MAX_BYTES } from "../../../services/deployments/defaults";

/** JSON escaping can double a module's size; the module itself is checked against its own limit. */
export const DEPLOY_BODY_LIMIT_BYTES = 2 * MODULE_CODE_MAX_BYTES + 64 * 1024;
