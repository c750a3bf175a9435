// The layers of src/ (docs/architecture.md), checked by `npm test`. Top to bottom:
//   entry        src/index.ts, src/outbound.ts, src/bench/, src/agent-host/
//   adapters     src/app.ts, src/env.ts, src/compose.ts, routes/, middleware/, queues/, cron/, entrypoints/
//   services     services/
//   runtime/auth runtime/, auth/
//   boundaries   cloudflare/, db/, crypto/
//   lib          lib/
// A module may import its own layer or any layer below it, never one above; no cycles.
const ENTRY = "^src/(index\\.ts|outbound\\.ts|bench/|agent-host/)";
const ADAPTERS = "^src/(app\\.ts|env\\.ts|compose\\.ts|routes/|middleware/|queues/|cron/|entrypoints/)";
const SERVICES = "^src/services/";
const RUNTIME_AUTH = "^src/(runtime|auth)/";
const BOUNDARIES = "^src/(cloudflare|db|crypto)/";

const above = (...layers) => layers.join("|");

module.exports = {
  forbidden: [
    { name: "no-cycles", severity: "error", from: { path: "^src/" }, to: { circular: true } },
    {
      name: "adapters-import-down",
      comment: "routes, queue handlers, cron and entrypoints never import the entry",
      severity: "error",
      from: { path: ADAPTERS },
      to: { path: ENTRY },
    },
    {
      name: "services-import-down",
      comment: "services know nothing of HTTP, queues, cron or entrypoints",
      severity: "error",
      from: { path: SERVICES },
      to: { path: above(ENTRY, ADAPTERS) },
    },
    {
      name: "runtime-auth-import-down",
      severity: "error",
      from: { path: RUNTIME_AUTH },
      to: { path: above(ENTRY, ADAPTERS, SERVICES) },
    },
    {
      name: "boundaries-import-down",
      severity: "error",
      from: { path: BOUNDARIES },
      to: { path: above(ENTRY, ADAPTERS, SERVICES, RUNTIME_AUTH) },
    },
    {
      name: "lib-imports-only-lib",
      severity: "error",
      from: { path: "^src/lib/" },
      to: { path: "^src/", pathNot: "^src/lib/" },
    },
    {
      name: "jose-only-in-auth",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/auth/" },
      to: { path: "node_modules/jose/" },
    },
    {
      name: "cloudflare-api-only-in-cloudflare",
      comment: "the Cloudflare REST API client (src/cloudflare/) is used only by the runtime that uploads scripts",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(cloudflare|runtime)/" },
      to: { path: "^src/cloudflare/|node_modules/cloudflare/" },
    },
    {
      name: "aws-only-in-agentcore-client",
      comment: "AWS (SigV4 via aws4fetch) is called only by src/runtime/agentcore/aws-client.ts",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/runtime/agentcore/aws-client\\.ts$" },
      to: { path: "node_modules/aws4fetch/" },
    },
    {
      name: "agent-host-runs-code-only",
      comment:
        "the agent host (a separate Worker) holds no data: it runs agents through runtime/ and reaches the gateway only by its bridge binding",
      severity: "error",
      from: { path: "^src/agent-host/" },
      to: { path: "^src/", pathNot: "^src/(agent-host|runtime|lib)/" },
    },
    {
      name: "src-stands-alone",
      comment: "the worker never imports the scripts, the tests or the template's sources",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^(scripts|tests|user-worker-template)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "workerd", "worker", "default"] },
  },
};
