// An instance's page: its overview, registration, custom metrics, chart and commands.

import { api } from "./api.js";
import { drawCharts } from "./chart.js";
import { $, el, fill, setText } from "./dom.js";
import { configText, fleet, setBadge, upsert } from "./fleet.js";
import {
  compactJson,
  DASH,
  formatAge,
  formatCpu,
  formatDateTime,
  formatDuration,
  formatMemory,
  heartbeatAge,
  integer,
  verdictOf,
} from "./format.js";
import { draws, invalidate } from "./frame.js";
import { targetInstance } from "./send.js";

/** How often the page asks again for the instance's metrics, chart and history. */
const PAGE_REFRESH_MS = 5000;

/** The instance shown: its id, the timer that refreshes it, and the parts of its page to fill. */
export const page = { id: null, timer: 0, parts: null };

export function showInstance(id) {
  $("fleet-view").hidden = true;
  $("instance-view").hidden = false;
  if (page.id === id) return;
  clearInterval(page.timer);
  Object.assign(page, { id, parts: pageSkeleton(id) });
  document.title = `${id} · SubNodeSync console`;
  loadPage();
  page.timer = setInterval(loadPage, PAGE_REFRESH_MS);
}

export function showFleet() {
  clearInterval(page.timer);
  Object.assign(page, { id: null, parts: null, timer: 0 });
  $("instance-view").hidden = true;
  fill($("instance-view"));
  $("fleet-view").hidden = false;
  document.title = "SubNodeSync console";
}

/** The overview's fields, from the instance's entry in the fleet, which the stream keeps live. */
const OVERVIEW = [
  ["Node", (i) => i.node_name ?? DASH],
  ["Version", (i) => i.version || DASH],
  ["Host", (i) => i.hostname || DASH],
  ["PID", (i) => (i.pid == null ? DASH : String(i.pid))],
  ["Started", (i) => formatDateTime(i.start_time)],
  ["Uptime", (i) => formatDuration(i.uptime)],
  ["Last heartbeat", (i) => formatAge(heartbeatAge(i))],
  ["Heartbeats", (i) => (i.heartbeats == null ? DASH : integer.format(i.heartbeats))],
  ["CPU", (i) => formatCpu(i.cpu_percent)],
  ["Memory", (i) => formatMemory(i.memory_mb)],
  ["Threads", (i) => (i.threads == null ? DASH : String(i.threads))],
  [
    "Desired state",
    (i) =>
      configText(i) === DASH
        ? DASH
        : `${configText(i)}: desired version ${i.desired_version}, reported ${i.reported_version ?? "none"}`,
  ],
  [
    "Registered",
    (i) => (i.registered ? `yes, ${formatDateTime(i.registered_ms)}` : "no: its register message is cleared"),
  ],
];

function card(title, body, { aside = null, wide = false } = {}) {
  return el(
    "section",
    { class: wide ? "card wide" : "card" },
    el("div", { class: "card-head" }, el("h2", null, title), aside),
    body,
  );
}

function pageSkeleton(id) {
  const badge = el("span", { class: "badge" });
  const values = OVERVIEW.map(() => el("dd"));
  const legend = el("div", { class: "legend" });
  const parts = {
    badge,
    values,
    legend,
    charts: el("div", { class: "charts" }, el("p", { class: "muted" }, "Loading…")),
    register: el("div", null, el("p", { class: "muted" }, "Loading…")),
    metrics: el("div", null, el("p", { class: "muted" }, "Loading…")),
    history: el("div", null, el("p", { class: "muted" }, "Loading…")),
    problem: el("p", { class: "error", hidden: true, role: "alert" }),
  };
  fill(
    $("instance-view"),
    el("nav", { class: "crumbs" }, el("a", { href: "#/" }, "← Fleet")),
    el(
      "div",
      { class: "page-head" },
      el("h1", { class: "mono" }, id),
      badge,
      el("button", { type: "button", class: "primary", onclick: () => targetInstance(id) }, "Send a command"),
    ),
    parts.problem,
    el(
      "div",
      { class: "page-grid" },
      card(
        "Overview",
        el(
          "dl",
          { class: "kv" },
          OVERVIEW.map(([label], n) => [el("dt", null, label), values[n]]),
        ),
      ),
      card("CPU and memory, last hour", parts.charts, { aside: legend }),
      card("Registration", parts.register),
      card("Custom metrics", parts.metrics),
      card("Command history", parts.history, { wide: true }),
    ),
  );
  return parts;
}

/** Fetches the instance again and redraws what only the API has: registration, metrics, chart, history. */
export async function loadPage() {
  const id = page.id;
  let detail;
  try {
    detail = await api(`/api/nodes/${encodeURIComponent(id)}`);
  } catch (error) {
    if (page.id !== id) return;
    page.parts.problem.hidden = false;
    setText(
      page.parts.problem,
      error.status === 404
        ? "The engine does not know this instance (any more): it may have been pruned."
        : `Cannot load this instance: ${error.message}`,
    );
    return;
  }
  if (page.id !== id) return;
  page.parts.problem.hidden = true;
  if (upsert(detail)) invalidate("options");
  invalidate("fleet");
  drawRegister(detail.register);
  drawMetrics(detail.metrics);
  drawCharts(page.parts, detail.trend ?? []);
  drawHistory(detail.history ?? []);
}

function drawOverview() {
  const inst = fleet.get(page.id);
  if (!inst) return;
  setBadge(page.parts.badge, inst.status);
  OVERVIEW.forEach(([, value], n) => setText(page.parts.values[n], value(inst)));
}

/** Key and value rows; values that are not text are shown as JSON. */
function keyValues(object) {
  const entries = object && typeof object === "object" ? Object.entries(object) : [];
  if (!entries.length) return el("p", { class: "muted" }, "None.");
  return el(
    "dl",
    { class: "kv" },
    entries.map(([k, v]) => [el("dt", null, k), el("dd", null, compactJson(v))]),
  );
}

function drawRegister(register) {
  if (!register || typeof register !== "object") {
    fill(page.parts.register, el("p", { class: "muted" }, "No register message is kept for this instance."));
    return;
  }
  const capabilities = Array.isArray(register.capabilities) ? register.capabilities : [];
  fill(
    page.parts.register,
    // Its version, pid, host and start time are in the overview, which the registry took from it.
    el(
      "dl",
      { class: "kv" },
      el("dt", null, "Registered at"),
      el("dd", null, formatDateTime(register.timestamp)),
      el("dt", null, "Capabilities"),
      el(
        "dd",
        { class: "chips" },
        capabilities.length ? capabilities.map((c) => el("span", { class: "chip" }, compactJson(c))) : DASH,
      ),
    ),
    el("h3", null, "Metadata"),
    keyValues(register.metadata),
    el("h3", null, "Build"),
    keyValues(register.node_version),
  );
}

function drawMetrics(metrics) {
  const entries = Object.entries(metrics && typeof metrics === "object" ? metrics : {});
  if (!entries.length) {
    fill(page.parts.metrics, el("p", { class: "muted" }, "No metrics in its last heartbeat."));
    return;
  }
  const show = (v) =>
    typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: 3 }) : compactJson(v);
  fill(
    page.parts.metrics,
    el(
      "table",
      { class: "plain metrics" },
      el(
        "tbody",
        null,
        entries.map(([k, v]) => el("tr", null, el("th", { scope: "row" }, k), el("td", null, show(v)))),
      ),
    ),
  );
}

function drawHistory(history) {
  if (!history.length) {
    fill(page.parts.history, el("p", { class: "muted" }, "No command was sent to this instance yet."));
    return;
  }
  const rows = history.map((c) => {
    const mine = (c.results ?? []).filter((r) => r.instance_id === page.id);
    const last = mine.find((r) => r.state === "done") ?? mine.at(-1);
    const verdict = last ? verdictOf(last) : { tone: "muted", text: "no answer" };
    return el(
      "tr",
      null,
      el("td", { class: "num nowrap" }, formatDateTime(c.sent_ms)),
      el("td", { class: "mono" }, c.command ?? ""),
      el("td", { class: "mono clip", title: compactJson(c.parameters ?? {}) }, compactJson(c.parameters ?? {})),
      el("td", { class: "mono clip", title: c.target ?? "" }, c.target ?? ""),
      el("td", null, el("span", { class: `verdict tone-${verdict.tone}` }, verdict.text)),
      el("td", { class: "clip", title: last?.message ?? "" }, last?.message ?? ""),
      el("td", { class: "mono clip faint", title: c.request_id ?? "" }, c.request_id ?? ""),
    );
  });
  fill(
    page.parts.history,
    el(
      "table",
      { class: "plain history" },
      el(
        "thead",
        null,
        el(
          "tr",
          null,
          ["Sent", "Command", "Parameters", "Target", "Result", "Message", "Request"].map((h) =>
            el("th", { scope: "col" }, h),
          ),
        ),
      ),
      el("tbody", null, rows),
    ),
  );
}

draws(["fleet", "clock"], () => page.id && drawOverview());
