// The `webhost` program: commands, options and how each ends (see output.mjs for the exit codes).
import { cpSync, existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { CONFIG_FILE } from "./agent-config.mjs";
import { createClient, findAgent, requireAgent } from "./api.mjs";
import {
  DEFAULT_API_URL,
  describeCredential,
  normaliseUrl,
  readConfig,
  resolveSettings,
  writeConfig,
} from "./config.mjs";
import { deploy } from "./deploy.mjs";
import { ApiError, CliError, createOutput, EXIT_USAGE, reportError, UsageError } from "./output.mjs";
import { readEvents } from "./sse.mjs";

const VERSION = "0.1.0";
const TEMPLATE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "template");
const SCOPES = ["agents:read", "agents:write", "deploy", "invoke", "secrets:write", "usage:read"];
/** The compatibility date `init` writes: the platform's default. */
const DEFAULT_COMPATIBILITY_DATE = "2026-08-01";

const isTTY = () => Boolean(process.stdin.isTTY);

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(question) {
  return new Promise((resolvePromise, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding("utf8");
    let value = "";
    const finish = () => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      process.stderr.write("\n");
    };
    const onData = (text) => {
      for (const ch of text) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          finish();
          resolvePromise(value);
          return;
        }
        if (ch === "\u0003") {
          finish();
          reject(new UsageError("cancelled"));
          return;
        }
        value = ch === "\u007f" || ch === "\b" ? value.slice(0, -1) : value + ch;
      }
    };
    stdin.on("data", onData);
  });
}

/** A secret-ish value: from stdin when it is piped (one trailing newline dropped), else a hidden prompt. */
async function readSecretInput(question) {
  const value = isTTY() ? await promptHidden(question) : (await readStdin()).replace(/\r?\n$/, "");
  if (!value) throw new UsageError(isTTY() ? "nothing entered" : "stdin was empty: pipe the value in");
  return value;
}

const positiveInt = (name) => (value) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

/** One log line for a terminal: time (UTC), level, deployment, message. */
function formatLogLine(line) {
  const ts = String(line.ts).replace("T", " ").replace("Z", "");
  return `${ts}  ${String(line.level).toUpperCase().padEnd(5)}  ${line.deploymentId}  ${line.message}`;
}

const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "-");

/** @param {string[][]} rows */
function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => String(c ?? "").padEnd(widths[i]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * @param {string[]} argv process.argv
 * @param {{ env?: Record<string, string | undefined> }} [opts]
 * @returns {Promise<number>} the exit code
 */
export async function main(argv, { env = process.env } = {}) {
  let exitCode = 0;
  const program = new Command();

  /**
   * Wraps a command's action: output per --json, a client per --api-url / env / config, errors
   * reported the same way everywhere.
   * @param {(ctx: { out: import("./output.mjs").Output, opts: any, client: () => ReturnType<typeof createClient>, settings: () => ReturnType<typeof resolveSettings> }, ...args: any[]) => Promise<number | void>} fn
   */
  const action =
    (fn) =>
    async (...args) => {
      const cmd = args.at(-1);
      const opts = cmd.optsWithGlobals();
      const out = createOutput({ json: Boolean(opts.json) });
      try {
        let settings;
        const getSettings = () => {
          settings ??= resolveSettings({ apiUrl: opts.apiUrl }, env);
          return settings;
        };
        const client = () => createClient({ ...getSettings(), onRetry: (why) => out.progress(`${why}`) });
        exitCode = (await fn({ out, opts, client, settings: getSettings }, ...args.slice(0, -2))) ?? 0;
      } catch (err) {
        exitCode = reportError(err, out);
      }
    };

  /** Options every command takes. */
  const common = (cmd) =>
    cmd
      .option("--json", "print one JSON document on stdout (progress stays on stderr)")
      .option("--api-url <url>", `the API to talk to (else WEBHOST_API_URL, the stored login, ${DEFAULT_API_URL})`);

  program
    .name("webhost")
    .description(
      "Deploy, invoke and manage webhost.systems agents.\n\nCredentials: WEBHOST_API_KEY (an API key whk_… or a token), else the one `webhost login` stored.",
    )
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");

  common(program.command("login"))
    .description("store an API key or token for an API URL (read from stdin or a hidden prompt, never argv)")
    .action(
      action(async ({ out, opts }) => {
        const stored = readConfig(env);
        const apiUrl = normaliseUrl(opts.apiUrl ?? env.WEBHOST_API_URL ?? stored.apiUrl ?? DEFAULT_API_URL);
        const credential = (await readSecretInput(`API key or token for ${apiUrl}: `)).trim();
        const probe = createClient({ apiUrl, apiKey: credential });
        await verifyCredential(probe);
        const file = writeConfig(
          { ...stored, apiUrl, credentials: { ...stored.credentials, [apiUrl]: credential } },
          env,
        );
        const described = describeCredential(credential);
        out.progress(`logged in to ${apiUrl}; stored in ${file} (mode 0600)`);
        out.result({ apiUrl, credential: described, configPath: file }, "");
      }),
    );

  common(program.command("whoami"))
    .description("show the API URL and the credential in use, and check that the API accepts it")
    .action(
      action(async ({ out, client, settings }) => {
        const s = settings();
        const c = client();
        await verifyCredential(c);
        const credential = describeCredential(s.apiKey);
        out.result({ apiUrl: s.apiUrl, source: s.source, credential }, () =>
          credential.kind === "apiKey"
            ? `API key ${credential.prefix}… at ${s.apiUrl} (from ${s.source})`
            : `${credential.subject ?? "token"} at ${s.apiUrl} (token from ${s.source}${credential.expiresAt ? `, expires ${fmtTime(credential.expiresAt)} UTC` : ""})`,
        );
      }),
    );

  common(program.command("init"))
    .argument("[dir]", "directory to create the agent in", ".")
    .option("--name <name>", "the agent's name (default: the directory's name)")
    .option("--force", "write into a directory that is not empty")
    .description("scaffold a TypeScript agent: invoke/v1 JSON and SSE, telemetry, agent.config.json, a test")
    .action(
      action(async ({ out, opts }, dir) => {
        const root = resolve(dir);
        if (existsSync(root) && readdirSync(root).length && !opts.force) {
          throw new UsageError(`${root} is not empty (use --force to write into it anyway)`);
        }
        const name = (opts.name ?? basename(root)).trim();
        if (!/^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$/.test(name)) {
          throw new UsageError(
            `agent name ${JSON.stringify(name)}: use letters, digits, spaces, '-', '_' and '.', starting with a letter or digit (--name)`,
          );
        }
        cpSync(TEMPLATE_DIR, root, { recursive: true, force: Boolean(opts.force) });
        renameSync(join(root, "gitignore"), join(root, ".gitignore"));
        const packageName =
          name
            .toLowerCase()
            .replace(/[^a-z0-9._-]+/g, "-")
            .replace(/^[._-]+/, "") || "agent";
        for (const file of ["package.json", "README.md"]) {
          const path = join(root, file);
          writeFileSync(
            path,
            readFileSync(path, "utf8").replaceAll("{{name}}", name).replaceAll("{{package}}", packageName),
          );
        }
        const config = {
          name,
          main: "src/index.ts",
          compatibilityDate: DEFAULT_COMPATIBILITY_DATE,
          compatibilityFlags: [],
          invokePath: "/invoke",
        };
        writeFileSync(join(root, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
        const files = listFiles(root);
        out.progress(`created agent ${name} in ${root}`);
        out.result({ dir: root, name, files }, () =>
          [
            ...files.map((f) => `  ${f}`),
            "",
            "next:",
            `  (cd ${dir} && npm install && npm test)   # vitest and typescript, for the test`,
            `  webhost deploy ${dir}`,
          ].join("\n"),
        );
      }),
    );

  common(program.command("deploy"))
    .argument("[dir]", "the agent's directory (holds agent.config.json)", ".")
    .option("--no-wait", "return once the deployment is accepted, without waiting for active or failed")
    .option("--timeout <seconds>", "how long to wait for active or failed", positiveInt("--timeout"), 120)
    .option("--minify", "minify the bundle")
    .description("bundle the agent with esbuild, create it if needed, upload and wait until it is active")
    .action(
      action(async ({ out, opts, client }, dir) =>
        deploy(client(), { dir, wait: opts.wait, timeoutMs: opts.timeout * 1000, minify: opts.minify }, out),
      ),
    );

  common(program.command("invoke"))
    .argument("<agent>", "agent id or name")
    .argument("[message]", "the user message (else read from stdin)")
    .option("--stream", "stream the answer, printing each delta as it arrives")
    .option("--session <id>", "sessionId sent with the request")
    .option("--idempotency-key <key>", "send this Idempotency-Key (a retry with it never invokes twice)")
    .description("invoke an agent with one user message")
    .action(
      action(async ({ out, opts, client }, agentRef, message) => {
        if (message === undefined) {
          if (isTTY()) throw new UsageError("give a message, or pipe one on stdin");
          message = (await readStdin()).replace(/\r?\n$/, "");
        }
        if (!message) throw new UsageError("the message is empty");
        const c = client();
        const agent = await requireAgent(c, agentRef);
        const body = {
          messages: [{ role: "user", content: message }],
          ...(opts.session ? { sessionId: opts.session } : {}),
        };
        const path = `/v1/invoke/${agent.id}${opts.stream ? "/stream" : ""}`;
        const res = await c.send("POST", path, {
          body,
          accept: opts.stream ? "text/event-stream" : "application/json",
          idempotencyKey: opts.idempotencyKey,
          timeoutMs: opts.stream ? null : undefined,
        });
        const meta = {
          agentId: agent.id,
          deploymentId: res.headers.get("x-deployment-id"),
          requestId: res.headers.get("x-request-id"),
          replayed: res.headers.get("idempotent-replayed") === "true",
        };
        const type = res.headers.get("content-type") ?? "";
        if (!opts.stream || !type.startsWith("text/event-stream")) {
          // A replayed stream comes back as its final answer, in JSON.
          const answer = await res.json();
          out.result({ ...meta, answer }, () => answer?.output?.text ?? JSON.stringify(answer));
          return;
        }
        const deltas = [];
        let done;
        for await (const ev of readEvents(res.body)) {
          if (ev.event === "delta") {
            const text = safeJson(ev.data)?.text ?? "";
            deltas.push(text);
            if (!out.json) out.write(text);
          } else if (ev.event === "done") {
            done = safeJson(ev.data);
          } else if (ev.event === "error") {
            const e = safeJson(ev.data) ?? {};
            if (!out.json) out.write("\n");
            throw new ApiError({
              status: 502,
              code: e.code,
              title: "The stream ended with an error",
              detail: `${e.code ?? "error"}: ${e.message ?? ev.data}`,
              requestId: meta.requestId ?? undefined,
            });
          }
        }
        if (!out.json) out.write("\n");
        if (!done) throw new CliError("the stream ended without a done event", { deltas });
        if (out.json) out.result({ ...meta, answer: done, deltas });
      }),
    );

  common(program.command("deployments"))
    .argument("<agent>", "agent id or name")
    .option("--limit <n>", "how many, newest first", positiveInt("--limit"), 20)
    .description("list an agent's deployments, newest first")
    .action(
      action(async ({ out, opts, client }, agentRef) => {
        const c = client();
        const agent = await requireAgent(c, agentRef);
        const { deployments } = await c.get(`/v1/agents/${agent.id}/deployments?limit=${Math.min(opts.limit, 200)}`);
        out.result(
          { agent: { id: agent.id, name: agent.name, activeDeploymentId: agent.activeDeploymentId }, deployments },
          () =>
            deployments.length
              ? table([
                  ["ID", "STATUS", "CREATED (UTC)", "ACTIVATED (UTC)", "ERROR"],
                  ...deployments.map((d) => [
                    d.id,
                    d.status,
                    fmtTime(d.createdAt),
                    fmtTime(d.activatedAt),
                    d.errorMessage ?? "",
                  ]),
                ])
              : `${agent.name} has no deployments`,
        );
      }),
    );

  common(program.command("logs"))
    .argument("<agent>", "agent id or name")
    .option("-f, --follow", "keep printing new lines as the agent prints them (until interrupted)")
    .option("--limit <n>", "how many recent lines to print first (1–1000)", positiveInt("--limit"), 50)
    .option("--level <level>", "only lines at least this severe: debug, info, log, warn, error")
    .option("--since <time>", "only lines at or after this time (ISO 8601, or ms since the epoch)")
    .option("--deployment <id>", "only lines of this deployment")
    .option("-q, --query <text>", "only lines containing this text (case-insensitive)")
    .description("print an agent's log lines (console.*, uncaught exceptions, failed outcomes), oldest first")
    .action(
      action(async ({ out, opts, client }, agentRef) => {
        const c = client();
        const agent = await requireAgent(c, agentRef);
        const filter = new URLSearchParams();
        if (opts.level) filter.set("level", opts.level);
        if (opts.since) filter.set("since", opts.since);
        if (opts.deployment) filter.set("deploymentId", opts.deployment);
        if (opts.query) filter.set("q", opts.query);
        const page = await c.get(
          `/v1/agents/${agent.id}/logs?${new URLSearchParams([...filter, ["limit", String(Math.min(opts.limit, 1000))]])}`,
        );
        // The API answers newest first; a terminal reads oldest first.
        const recent = [...page.logs].reverse();
        if (!opts.follow) {
          out.result({ agent: { id: agent.id, name: agent.name }, logs: recent, nextCursor: page.nextCursor }, () =>
            recent.map(formatLogLine).join("\n"),
          );
          return;
        }
        // Following: one JSON document per line with --json (NDJSON), so it can be piped as it grows.
        const emit = (line) => out.write(`${out.json ? JSON.stringify(line) : formatLogLine(line)}\n`);
        for (const line of recent) emit(line);
        let lastId = recent.at(-1)?.id ?? 0;
        for (;;) {
          const res = await c.send(
            "GET",
            `/v1/agents/${agent.id}/logs?${new URLSearchParams([...filter, ["follow", "1"], ["after", String(lastId)]])}`,
            {
              accept: "text/event-stream",
              timeoutMs: null,
            },
          );
          try {
            for await (const ev of readEvents(res.body)) {
              if (ev.event === "log") {
                const line = safeJson(ev.data);
                if (!line) continue;
                lastId = line.id;
                emit(line);
              } else if (ev.event === "sampled") {
                const dropped = safeJson(ev.data)?.dropped ?? 0;
                if (out.json) out.write(`${JSON.stringify({ sampled: { dropped } })}\n`);
                else
                  out.progress(`… ${dropped} line(s) not shown: the agent printed faster than your plan's follow rate`);
              }
            }
          } catch (err) {
            out.progress(`the log stream broke (${err?.message ?? err}); reconnecting`);
          }
          // The stream never ends on its own: a disconnect (a proxy, a deploy of the gateway) resumes after the last line.
          await new Promise((r) => setTimeout(r, 1000));
        }
      }),
    );

  common(program.command("rollback"))
    .argument("<agent>", "agent id or name")
    .argument("[deploymentId]", "the deployment to make active (default: the one active before the current)")
    .description("make an earlier deployment active again (no upload; it keeps its own secrets)")
    .action(
      action(async ({ out, client }, agentRef, deploymentId) => {
        const c = client();
        const agent = await requireAgent(c, agentRef);
        let target = deploymentId;
        if (!target) {
          const { deployments } = await c.get(`/v1/agents/${agent.id}/deployments?limit=200`);
          target = previousActive(deployments, agent.activeDeploymentId)?.id;
          if (!target) throw new CliError(`${agent.name} has no earlier deployment that was active to roll back to`);
        }
        const { deployment } = await c.post(`/v1/agents/${agent.id}/deployments/${target}/activate`);
        out.progress(`${agent.name}: ${deployment.id} is ${deployment.status}`);
        out.result(
          { agent: { id: agent.id, name: agent.name }, previousDeploymentId: agent.activeDeploymentId, deployment },
          "",
        );
      }),
    );

  const secrets = program.command("secrets").description("an agent's secrets (values are write-only)");
  common(secrets.command("set"))
    .argument("<agent>", "agent id or name")
    .argument("<name>", "secret name, e.g. OPENAI_API_KEY")
    .description("create or replace a secret; the value comes from stdin or a hidden prompt, never argv")
    .action(
      action(async ({ out, client }, agentRef, name) => {
        const value = await readSecretInput(`value for ${name}: `);
        const c = client();
        const agent = await requireAgent(c, agentRef);
        const res = await c.send("PUT", `/v1/agents/${agent.id}/secrets/${encodeURIComponent(name)}`, {
          body: { value },
        });
        const answer = await res.json();
        const created = res.status === 201;
        out.progress(
          `${created ? "created" : "replaced"} ${name} on ${agent.name}; it takes effect with the next deploy`,
        );
        out.result({ agentId: agent.id, created, ...answer }, "");
      }),
    );
  common(secrets.command("list"))
    .argument("<agent>", "agent id or name")
    .description("list secret names (never values)")
    .action(
      action(async ({ out, client }, agentRef) => {
        const c = client();
        const agent = await requireAgent(c, agentRef);
        const { secrets: list } = await c.get(`/v1/agents/${agent.id}/secrets`);
        out.result({ agentId: agent.id, secrets: list }, () =>
          list.length
            ? table([["NAME", "UPDATED (UTC)"], ...list.map((s) => [s.name, fmtTime(s.updatedAt)])])
            : `${agent.name} has no secrets`,
        );
      }),
    );
  common(secrets.command("rm"))
    .argument("<agent>", "agent id or name")
    .argument("<name>", "secret name")
    .description("delete a secret (takes effect with the next deploy)")
    .action(
      action(async ({ out, client }, agentRef, name) => {
        const c = client();
        const agent = await requireAgent(c, agentRef);
        await c.delete(`/v1/agents/${agent.id}/secrets/${encodeURIComponent(name)}`);
        out.progress(`deleted ${name} from ${agent.name}`);
        out.result({ agentId: agent.id, name, deleted: true }, "");
      }),
    );

  common(program.command("usage"))
    .option("--period <YYYY-MM>", "an earlier month (default: this UTC month)")
    .description("this month's usage, your plan's limits and what remains")
    .action(
      action(async ({ out, opts, client }) => {
        if (opts.period && !/^\d{4}-\d{2}$/.test(opts.period)) throw new UsageError("--period must be YYYY-MM");
        const report = await client().get(opts.period ? `/v1/usage?period=${opts.period}` : "/v1/usage/current");
        out.result(report, () => {
          const u = report.usage ?? {};
          const lines = [
            `period ${report.periodKey ?? opts.period ?? ""} · tier ${report.tier ?? "?"}`,
            `requests ${u.requests ?? 0} (errors ${u.errors ?? 0}) · tokens in ${u.inputTokens ?? 0} / out ${u.outputTokens ?? 0}`,
          ];
          if (report.remaining)
            lines.push(
              `remaining: ${Object.entries(report.remaining)
                .map(([k, v]) => `${k} ${v}`)
                .join(" · ")}`,
            );
          if (report.agents?.length) {
            lines.push(
              "",
              table([
                ["AGENT", "REQUESTS", "ERRORS"],
                ...report.agents.map((a) => [a.name ?? a.agentId, a.usage?.requests ?? 0, a.usage?.errors ?? 0]),
              ]),
            );
          }
          return lines.join("\n");
        });
      }),
    );

  const keys = program.command("keys").description("API keys for CI and scripts (needs a user token, not a key)");
  common(keys.command("create"))
    .requiredOption("--name <name>", "what the key is for")
    .addOption(new Option("--scope <scope...>", "scopes (repeat or list)").choices(SCOPES).makeOptionMandatory())
    .option("--agent <agent...>", "restrict the key to these agents (ids or names)")
    .option("--expires-in-days <days>", "1-365 (default 90)", positiveInt("--expires-in-days"))
    .description("create a scoped API key; the key is printed once, on stdout")
    .action(
      action(async ({ out, opts, client }) => {
        const c = client();
        let agentIds;
        if (opts.agent) {
          agentIds = [];
          for (const ref of opts.agent) agentIds.push((await requireAgent(c, ref)).id);
        }
        const answer = await c.post("/v1/api-keys", {
          name: opts.name,
          scopes: opts.scope,
          ...(agentIds ? { agentIds } : {}),
          ...(opts.expiresInDays ? { expiresInDays: opts.expiresInDays } : {}),
        });
        out.progress(
          `created ${answer.apiKey.id} (${answer.apiKey.scopes.join(", ")}), expires ${fmtTime(answer.apiKey.expiresAt)} UTC; the key is shown only now`,
        );
        out.result(answer, answer.key);
      }),
    );
  common(keys.command("list"))
    .description("your API keys (never the key itself)")
    .action(
      action(async ({ out, client }) => {
        const { apiKeys } = await client().get("/v1/api-keys");
        out.result({ apiKeys }, () =>
          apiKeys.length
            ? table([
                ["ID", "NAME", "PREFIX", "SCOPES", "EXPIRES (UTC)", "LAST USED (UTC)"],
                ...apiKeys.map((k) => [
                  k.id,
                  k.name,
                  k.prefix,
                  k.scopes.join(","),
                  fmtTime(k.expiresAt),
                  fmtTime(k.lastUsedAt),
                ]),
              ])
            : "no API keys",
        );
      }),
    );
  common(keys.command("revoke"))
    .argument("<keyId>", "the key's id")
    .description("revoke an API key")
    .action(
      action(async ({ out, client }, keyId) => {
        await client().delete(`/v1/api-keys/${encodeURIComponent(keyId)}`);
        out.progress(`revoked ${keyId}`);
        out.result({ id: keyId, revoked: true }, "");
      }),
    );

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    throw err;
  }
  return exitCode;
}

/** Proves the credential works: any answer but 401 (a key without agents:read gets 403). */
async function verifyCredential(client) {
  try {
    await client.get("/v1/agents?limit=1");
  } catch (err) {
    if (err instanceof ApiError && err.problem.status === 403) return;
    throw err;
  }
}

/**
 * The deployment a rollback goes back to: the most recently active one other than the current.
 * @param {Array<{ id: string, status: string, activatedAt?: number | null }>} deployments
 * @param {string | null | undefined} currentId
 */
export function previousActive(deployments, currentId) {
  return deployments
    .filter((d) => d.id !== currentId && d.status === "inactive" && d.activatedAt)
    .sort((a, b) => b.activatedAt - a.activatedAt)[0];
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function listFiles(root, prefix = "") {
  return readdirSync(join(root, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(root, join(prefix, e.name)) : [join(prefix, e.name)]))
    .sort();
}

export { findAgent };
