// The egress door's own Worker for namespace mode: the dispatch namespace's outbound Worker
// (`outbound = { service = "webhost-egress", parameters = ["webhost_egress"] }` on the gateway's
// DISPATCHER binding), deployed from this repository with wrangler.outbound.toml. Every fetch()
// of a user worker in the namespace arrives here, with the caller's identity as an outbound
// parameter; it runs the same door as the loader's Egress entrypoint (src/entrypoints/egress.ts).
import { handleOutboundWorkerFetch } from "./entrypoints/egress";
import type { Env } from "./env";

export default {
  fetch: handleOutboundWorkerFetch,
} satisfies ExportedHandler<Env>;
