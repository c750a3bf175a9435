import type { D1Migration } from "cloudflare:test";
import type { Env as GatewayEnv } from "../src/env";

declare global {
  namespace Cloudflare {
    interface GlobalProps {
      mainModule: typeof import("../src/index");
    }
    interface Env extends GatewayEnv {
      TEST_MIGRATIONS: D1Migration[];
      TEST_SIGNING_JWKS: string;
      ARTIFACTS: R2Bucket;
      /** user-worker-template/test/fake-telemetry.mjs: records TELEMETRY reports per deploymentId. */
      FAKE_TELEMETRY: Fetcher & {
        reportsFor(deploymentId: string): Promise<Array<{ body: string; signature: string; deploymentId: string }>>;
      };
    }
  }
}
