// The dashboard: one page, routed by the URL's hash (#/agents, #/agents/<id>, #/keys, #/signin),
// built only from the gateway's public API. Served by the gateway itself (src/routes/dashboard);
// bundled by scripts/build-dashboard.mjs.
import {
  type Agent,
  type AgentStats,
  type ApiKey,
  ApiProblem,
  api,
  clearCredential,
  credential,
  type Deployment,
  type LogLine,
  type SecretName,
  type StatsSummary,
  setCredential,
  type UsageReport,
} from "./api";
import { badge, fmt, h, percent, replace, table, when } from "./dom";
import { followLogs } from "./logs";

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;

// Aborted when the page changes: pending requests and the log follow end with it.
let pageAbort = new AbortController();

function errorText(err: unknown): string {
  if (err instanceof ApiProblem) return `${err.message} (${err.code}${err.requestId ? `, ${err.requestId}` : ""})`;
  return err instanceof Error ? err.message : String(err);
}

function notice(el: HTMLElement, kind: "ok" | "error", text: string) {
  replace(el, h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, text));
}

const path = (...parts: string[]) => parts.map(encodeURIComponent).join("/");

async function route() {
  pageAbort.abort();
  pageAbort = new AbortController();
  const signal = pageAbort.signal;
  const hash = location.hash.replace(/^#/, "") || "/agents";
  if (!credential()) {
    nav.hidden = true;
    renderSignIn();
    return;
  }
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a")) {
    link.toggleAttribute("aria-current", hash.startsWith(link.getAttribute("href")?.slice(1) ?? "-"));
  }
  const agentMatch = hash.match(/^\/agents\/([^/]+)$/);
  try {
    if (agentMatch?.[1]) await renderAgent(decodeURIComponent(agentMatch[1]), signal);
    else if (hash === "/keys") await renderKeys(signal);
    else await renderAgents(signal);
  } catch (err) {
    if (signal.aborted) return;
    replace(
      main,
      h("h1", {}, "Something went wrong"),
      h("p", { class: "notice notice-error", role: "alert" }, errorText(err)),
    );
  }
}

// --- sign in ---------------------------------------------------------------------------------

function renderSignIn(message?: string) {
  const input = h("input", {
    id: "credential",
    name: "credential",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "eyJ… or whk_…",
  });
  const status = h("div", { "aria-live": "polite" });
  if (message) notice(status, "error", message);
  const form = h(
    "form",
    { class: "card signin" },
    h("h1", {}, "Sign in"),
    h(
      "p",
      { class: "muted" },
      "Paste a user token (JWT) or an API key (whk_…). It stays in this tab's session storage and is sent only as the Authorization header to this gateway.",
    ),
    h("label", { for: "credential" }, "Token or API key"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    setCredential(value);
    try {
      await api("GET", "/v1/agents?limit=1");
      input.value = "";
      location.hash = "#/agents";
      void route();
    } catch (err) {
      clearCredential();
      notice(status, "error", `That credential was refused: ${errorText(err)}`);
    }
  });
  replace(main, form);
  input.focus();
}

// --- agents ----------------------------------------------------------------------------------

function healthCell(stats: StatsSummary | undefined, failed: boolean): HTMLElement {
  if (failed) return h("span", { class: "muted" }, "unavailable");
  if (!stats) return h("span", { class: "muted" }, "…");
  if (stats.invocations === 0) return h("span", { class: "muted" }, "no invocations");
  const kind = stats.errorRate >= 0.05 ? "bad" : stats.errorRate > 0 ? "warn" : "good";
  return h(
    "span",
    { class: `health health-${kind}` },
    `${fmt(stats.invocations)} calls · ${percent(stats.errorRate)} errors · p95 ${fmt(stats.durationMs.p95, " ms")}`,
  );
}

async function renderAgents(signal: AbortSignal) {
  replace(main, h("h1", {}, "Agents"), h("p", { class: "muted" }, "Loading…"));
  const agents: Agent[] = [];
  let cursor: string | null = null;
  // At most 5 pages of 100: a dashboard list, not an export.
  for (let page = 0; page < 5; page++) {
    const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const res: { agents: Agent[]; nextCursor: string | null } = await api(
      "GET",
      `/v1/agents?limit=100${q}`,
      undefined,
      signal,
    );
    agents.push(...res.agents);
    cursor = res.nextCursor;
    if (!cursor) break;
  }
  const rows = agents.map((agent) => {
    const health = h("td", { "data-label": "24 h health" }, healthCell(undefined, false));
    const row = h(
      "tr",
      { "data-agent-id": agent.id },
      h("td", { "data-label": "Agent" }, h("a", { href: `#/agents/${path(agent.id)}` }, agent.name)),
      h(
        "td",
        { "data-label": "Status" },
        agent.status === "disabled"
          ? badge("disabled")
          : agent.activeDeploymentId
            ? badge("serving", "active")
            : badge("no deployment", "none"),
      ),
      health,
      h("td", { "data-label": "Created" }, when(agent.createdAt)),
    );
    return { agent, row, health };
  });
  replace(
    main,
    h("h1", {}, "Agents"),
    table(
      ["Agent", "Status", "24 h health", "Created"],
      rows.map((r) => r.row),
      "No agents yet. Create one with `npx webhost deploy <dir>` or POST /v1/agents.",
    ),
    cursor ? h("p", { class: "muted" }, "Showing the newest 500 agents.") : null,
  );
  // Health per agent, a few at a time so a long list does not flood the gateway.
  const queue = [...rows];
  const worker = async () => {
    for (let next = queue.shift(); next && !signal.aborted; next = queue.shift()) {
      const cell = next.health;
      try {
        const { stats } = await api<{ stats: AgentStats }>(
          "GET",
          `/v1/agents/${path(next.agent.id)}/stats?window=24h`,
          undefined,
          signal,
        );
        replace(cell, healthCell(stats.totals, false));
      } catch {
        if (!signal.aborted) replace(cell, healthCell(undefined, true));
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

// --- one agent -------------------------------------------------------------------------------

async function renderAgent(agentId: string, signal: AbortSignal) {
  const { agent } = await api<{ agent: Agent }>("GET", `/v1/agents/${path(agentId)}`, undefined, signal);
  const header = h("div", { class: "agent-header" });
  const healthBox = h("section", { class: "card", "aria-labelledby": "health-h" });
  const deploymentsBox = h("section", { class: "card", id: "deployments", "aria-labelledby": "deployments-h" });
  const logsBox = h("section", { class: "card", id: "logs", "aria-labelledby": "logs-h" });
  const usageBox = h("section", { class: "card", "aria-labelledby": "usage-h" });
  const secretsBox = h("section", { class: "card", id: "secrets", "aria-labelledby": "secrets-h" });
  replace(
    main,
    h("p", {}, h("a", { href: "#/agents" }, "← Agents")),
    header,
    h("div", { class: "grid" }, healthBox, usageBox),
    deploymentsBox,
    logsBox,
    secretsBox,
  );

  const renderHeader = (a: Agent) =>
    replace(
      header,
      h("h1", {}, a.name),
      h(
        "p",
        { class: "meta" },
        a.status === "disabled" ? badge("disabled") : badge("enabled", "active"),
        " ",
        h("code", {}, a.id),
        a.description ? ` · ${a.description}` : "",
      ),
      h(
        "p",
        { class: "meta" },
        "Serving: ",
        a.activeDeploymentId
          ? h("code", { id: "active-deployment" }, a.activeDeploymentId)
          : h("span", { class: "muted", id: "active-deployment" }, "nothing"),
      ),
    );
  renderHeader(agent);

  const refreshAgent = async () => {
    const fresh = await api<{ agent: Agent }>("GET", `/v1/agents/${path(agentId)}`, undefined, signal);
    renderHeader(fresh.agent);
  };

  await Promise.all([
    renderHealth(healthBox, agentId, "24h", signal),
    renderUsage(usageBox, agentId, signal),
    renderDeployments(deploymentsBox, agentId, signal, refreshAgent),
    renderSecrets(secretsBox, agentId, signal),
  ]);
  renderLogs(logsBox, agentId, signal);
}

async function renderHealth(box: HTMLElement, agentId: string, window: string, signal: AbortSignal) {
  const windows = h(
    "div",
    { class: "segmented", role: "group", "aria-label": "Window" },
    ...["1h", "24h", "7d"].map((w) =>
      h(
        "button",
        {
          type: "button",
          "aria-pressed": String(w === window),
          onclick: () =>
            void renderHealth(box, agentId, w, signal).catch((err) => notice(box, "error", errorText(err))),
        },
        w,
      ),
    ),
  );
  const { stats } = await api<{ stats: AgentStats }>(
    "GET",
    `/v1/agents/${path(agentId)}/stats?window=${window}`,
    undefined,
    signal,
  );
  const t = stats.totals;
  const figure = (label: string, value: string) =>
    h(
      "div",
      { class: "figure" },
      h("span", { class: "figure-value" }, value),
      h("span", { class: "figure-label" }, label),
    );
  replace(
    box,
    h("div", { class: "section-head" }, h("h2", { id: "health-h" }, "Health"), windows),
    h(
      "div",
      { class: "figures", id: "health-figures" },
      figure("invocations", fmt(t.invocations)),
      figure("error rate", percent(t.errorRate)),
      figure("p50", fmt(t.durationMs.p50, " ms")),
      figure("p95", fmt(t.durationMs.p95, " ms")),
      figure("p99", fmt(t.durationMs.p99, " ms")),
      figure("tokens in / out", `${fmt(t.tokens.input)} / ${fmt(t.tokens.output)}`),
    ),
    t.errorsByCode.length > 0
      ? h("p", { class: "meta" }, "Errors: ", t.errorsByCode.map((e) => `${e.code} × ${e.count}`).join(", "))
      : null,
    table(
      ["Deployment", "Calls", "Errors", "p95", "Tokens in/out"],
      stats.deployments.map((d) =>
        h(
          "tr",
          {},
          h("td", { "data-label": "Deployment" }, h("code", {}, d.deploymentId)),
          h("td", { "data-label": "Calls" }, fmt(d.invocations)),
          h("td", { "data-label": "Errors" }, `${fmt(d.errors)} (${percent(d.errorRate)})`),
          h("td", { "data-label": "p95" }, fmt(d.durationMs.p95, " ms")),
          h("td", { "data-label": "Tokens in/out" }, `${fmt(d.tokens.input)} / ${fmt(d.tokens.output)}`),
        ),
      ),
      `No invocations in the last ${window}.`,
    ),
  );
}

/** The deployment `webhost rollback` would go back to: the most recently active one before the current. */
function rollbackTarget(deployments: Deployment[]): Deployment | undefined {
  return deployments
    .filter((d) => d.status === "inactive" && d.activatedAt)
    .sort((a, b) => (b.activatedAt ?? 0) - (a.activatedAt ?? 0))[0];
}

/**
 * The deployments table, kept current: the list is read again every 2 s while the tab is visible
 * and redrawn only when an id or a status changed (so a deploy made elsewhere is seen going from
 * `deploying` to `active` without the table flickering under the user's pointer).
 */
async function renderDeployments(
  box: HTMLElement,
  agentId: string,
  signal: AbortSignal,
  onChange: () => Promise<void>,
) {
  let shown = "";
  const status = h("div", { "aria-live": "polite" });
  const load = async (force: boolean) => {
    const { deployments } = await api<{ deployments: Deployment[] }>(
      "GET",
      `/v1/agents/${path(agentId)}/deployments?limit=50`,
      undefined,
      signal,
    );
    const signature = deployments.map((d) => `${d.id}:${d.status}`).join(",");
    if (!force && signature === shown) return;
    if (shown !== "" && signature !== shown) void onChange().catch(() => {});
    shown = signature;
    draw(deployments);
  };
  const activate = async (d: Deployment, verb: string, button: HTMLButtonElement) => {
    button.disabled = true;
    try {
      await api("POST", `/v1/agents/${path(agentId)}/deployments/${path(d.id)}/activate`);
      await Promise.all([load(true), onChange()]);
      notice(status, "ok", `${verb}: ${d.id} is active.`);
    } catch (err) {
      button.disabled = false;
      notice(status, "error", `${verb} failed: ${errorText(err)}`);
    }
  };
  const draw = (deployments: Deployment[]) => {
    const target = rollbackTarget(deployments);
    const rollback = h("button", { type: "button", id: "rollback", disabled: !target }, "Roll back");
    rollback.addEventListener("click", () => target && void activate(target, "Rolled back", rollback));
    const rows = deployments.map((d) => {
      const canActivate = d.status === "inactive" || d.status === "ready";
      const button = h("button", { type: "button", class: "small", "data-action": "activate" }, "Activate");
      button.addEventListener("click", () => void activate(d, "Activated", button));
      return h(
        "tr",
        { "data-deployment-id": d.id, "data-status": d.status },
        h("td", { "data-label": "Deployment" }, h("code", {}, d.id)),
        h("td", { "data-label": "Status" }, badge(d.status)),
        h("td", { "data-label": "Created" }, when(d.createdAt)),
        h("td", { "data-label": "Last active" }, when(d.activatedAt)),
        h(
          "td",
          { "data-label": "" },
          canActivate ? button : d.errorMessage ? h("span", { class: "error-text" }, d.errorMessage) : "",
        ),
      );
    });
    replace(
      box,
      h(
        "div",
        { class: "section-head" },
        h("h2", { id: "deployments-h" }, "Deployments"),
        h("span", { class: "muted" }, target ? `Roll back goes to ${target.id}` : "Nothing to roll back to"),
        rollback,
      ),
      table(["Deployment", "Status", "Created", "Last active", ""], rows, "No deployments yet."),
      status,
    );
  };
  await load(true);
  const poll = async () => {
    while (!signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      if (signal.aborted || document.visibilityState !== "visible") continue;
      await load(false).catch(() => {});
    }
  };
  void poll();
}

function renderLogs(box: HTMLElement, agentId: string, signal: AbortSignal) {
  const state = h("span", { class: "muted", id: "logs-state" }, "connecting…");
  const list = h("ol", { class: "logs", id: "log-lines", "aria-live": "polite" });
  let paused = false;
  const pause = h("button", { type: "button", class: "small", "aria-pressed": "false" }, "Pause");
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
  });
  replace(box, h("div", { class: "section-head" }, h("h2", { id: "logs-h" }, "Live logs"), state, pause), list);
  const add = (item: HTMLElement) => {
    if (paused) return;
    list.append(item);
    while (list.childElementCount > 500) list.firstElementChild?.remove();
    list.scrollTop = list.scrollHeight;
  };
  followLogs(
    agentId,
    {
      line: (line: LogLine) =>
        add(
          h(
            "li",
            { class: `log log-${line.level}` },
            h("time", { datetime: new Date(line.ts).toISOString() }, new Date(line.ts).toISOString().slice(11, 23)),
            h("span", { class: "level" }, line.level),
            h("span", { class: "message" }, line.message),
            h("span", { class: "muted ref", title: `${line.deploymentId} ${line.requestId}` }, line.requestId),
          ),
        ),
      sampled: (dropped) =>
        add(h("li", { class: "log log-sampled" }, `… ${fmt(dropped)} lines dropped (sampled under load)`)),
      state: (s, detail) => {
        state.textContent = detail ? `${s}: ${detail}` : s;
      },
    },
    signal,
  );
}

async function renderUsage(box: HTMLElement, agentId: string, signal: AbortSignal) {
  let report: UsageReport;
  try {
    report = await api<UsageReport>("GET", "/v1/usage/current", undefined, signal);
  } catch (err) {
    replace(box, h("h2", { id: "usage-h" }, "Usage this month"), h("p", { class: "muted" }, errorText(err)));
    return;
  }
  const mine = report.agents.find((a) => a.agentId === agentId)?.usage;
  const row = (label: string, agentValue: number, accountValue: number, limit: number | undefined) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, label),
      h("td", { "data-label": "This agent" }, fmt(agentValue)),
      h("td", { "data-label": "Account" }, fmt(accountValue)),
      h(
        "td",
        { "data-label": "Plan limit" },
        limit === undefined
          ? "—"
          : h("span", {}, fmt(limit), " ", h("progress", { max: limit, value: Math.min(accountValue, limit) })),
      ),
    );
  const u = report.usage;
  replace(
    box,
    h("h2", { id: "usage-h" }, `Usage this month (${report.periodKey}, ${report.tier} plan)`),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h(
          "thead",
          {},
          h("tr", {}, h("th", {}, ""), h("th", {}, "This agent"), h("th", {}, "Account"), h("th", {}, "Plan limit")),
        ),
        h(
          "tbody",
          {},
          row("Invocations", mine?.requests ?? 0, u.requests, report.limits.invocationsPerPeriod),
          row("Errors", mine?.errors ?? 0, u.errors, undefined),
          row("Tokens in (reported)", mine?.inputTokens ?? 0, u.inputTokens, undefined),
          row("Tokens out (reported)", mine?.outputTokens ?? 0, u.outputTokens, undefined),
          row(
            "Model tokens",
            (mine?.modelInputTokens ?? 0) + (mine?.modelOutputTokens ?? 0),
            u.modelInputTokens + u.modelOutputTokens,
            report.limits.modelTokensPerPeriod,
          ),
          row("Outbound requests", mine?.egressRequests ?? 0, u.egressRequests, undefined),
        ),
      ),
    ),
    h("p", { class: "meta" }, `${fmt(report.remaining.invocations)} invocations left this month.`),
  );
}

async function renderSecrets(box: HTMLElement, agentId: string, signal: AbortSignal) {
  const { secrets } = await api<{ secrets: SecretName[] }>(
    "GET",
    `/v1/agents/${path(agentId)}/secrets`,
    undefined,
    signal,
  );
  const status = h("div", { "aria-live": "polite" });
  const reload = () => renderSecrets(box, agentId, signal).catch((err) => notice(status, "error", errorText(err)));
  const rows = secrets.map((s) => {
    const del = h("button", { type: "button", class: "small danger" }, "Delete");
    del.addEventListener("click", async () => {
      del.disabled = true;
      try {
        await api("DELETE", `/v1/agents/${path(agentId)}/secrets/${path(s.name)}`);
        await reload();
      } catch (err) {
        del.disabled = false;
        notice(status, "error", errorText(err));
      }
    });
    return h(
      "tr",
      {},
      h("td", { "data-label": "Name" }, h("code", {}, s.name)),
      h("td", { "data-label": "Updated" }, when(s.updatedAt)),
      h("td", { "data-label": "" }, del),
    );
  });
  const name = h("input", {
    name: "name",
    required: true,
    placeholder: "NAME",
    autocomplete: "off",
    spellcheck: "false",
    "aria-label": "Secret name",
  });
  const value = h("input", {
    name: "value",
    type: "password",
    required: true,
    autocomplete: "new-password",
    placeholder: "value",
    "aria-label": "Secret value",
  });
  const form = h("form", { class: "inline-form" }, name, value, h("button", { type: "submit" }, "Set secret"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("PUT", `/v1/agents/${path(agentId)}/secrets/${path(name.value.trim())}`, { value: value.value });
      value.value = "";
      await reload();
    } catch (err) {
      // The value is cleared on failure too: it is never kept in the page longer than the request.
      value.value = "";
      notice(status, "error", errorText(err));
    }
  });
  replace(
    box,
    h("h2", { id: "secrets-h" }, "Secrets"),
    h(
      "p",
      { class: "muted" },
      "Values are write-only: the gateway never returns them. A change reaches the agent with its next deployment.",
    ),
    table(["Name", "Updated", ""], rows, "No secrets."),
    form,
    status,
  );
}

// --- API keys --------------------------------------------------------------------------------

async function renderKeys(signal: AbortSignal) {
  replace(main, h("h1", {}, "API keys"), h("p", { class: "muted" }, "Loading…"));
  let keys: ApiKey[];
  try {
    keys = (await api<{ apiKeys: ApiKey[] }>("GET", "/v1/api-keys", undefined, signal)).apiKeys;
  } catch (err) {
    if (err instanceof ApiProblem && err.status === 403) {
      replace(
        main,
        h("h1", {}, "API keys"),
        h(
          "p",
          { class: "notice notice-error" },
          "API keys are managed with a user token (JWT); you signed in with an API key.",
        ),
      );
      return;
    }
    throw err;
  }
  const status = h("div", { "aria-live": "polite" });
  const rows = keys.map((k) => {
    const revoke = h("button", { type: "button", class: "small danger" }, "Revoke");
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      try {
        await api("DELETE", `/v1/api-keys/${path(k.id)}`);
        await renderKeys(signal);
      } catch (err) {
        revoke.disabled = false;
        notice(status, "error", errorText(err));
      }
    });
    return h(
      "tr",
      {},
      h("td", { "data-label": "Name" }, k.name),
      h("td", { "data-label": "Prefix" }, h("code", {}, `${k.prefix}…`)),
      h("td", { "data-label": "Scopes" }, k.scopes.join(", ")),
      h("td", { "data-label": "Agents" }, k.agentIds ? k.agentIds.join(", ") : "all"),
      h("td", { "data-label": "Last used" }, when(k.lastUsedAt)),
      h("td", { "data-label": "Expires" }, new Date(k.expiresAt).toISOString().slice(0, 10)),
      h("td", { "data-label": "" }, revoke),
    );
  });
  replace(
    main,
    h("h1", {}, "API keys"),
    h(
      "p",
      { class: "muted" },
      "Create keys with `npx webhost keys create` or POST /v1/api-keys: a key is shown once, to whoever created it, and never by this dashboard.",
    ),
    table(["Name", "Prefix", "Scopes", "Agents", "Last used", "Expires", ""], rows, "No API keys."),
    status,
  );
}

// --- wiring ----------------------------------------------------------------------------------

window.addEventListener("hashchange", () => void route());
window.addEventListener("webhost:unauthenticated", () => {
  clearCredential();
  pageAbort.abort();
  nav.hidden = true;
  renderSignIn("Your session ended (the credential was refused). Sign in again.");
});
document.getElementById("sign-out")?.addEventListener("click", () => {
  clearCredential();
  location.hash = "#/signin";
  void route();
});
void route();
