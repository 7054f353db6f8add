// The fleet as this page knows it, and the fleet table with its filters, counts and sorting.

import { api } from "./api.js";
import { $, el, fill, setAttr, setText } from "./dom.js";
import {
  compareKeys,
  DASH,
  formatAge,
  formatCpu,
  formatDuration,
  formatMemory,
  heartbeatAge,
  instanceHref,
  instanceLink,
  integer,
  naturally,
  sortKey,
  STATUSES,
  statusTone,
} from "./format.js";
import { draws, invalidate } from "./frame.js";

/** Instances by id: the API's objects, plus `heartbeatAt`, when the last heartbeat came by this browser's clock. */
export const fleet = new Map();

/** The fields a row or an instance object may set; a fixed list, so the wire cannot set anything else. */
const FIELDS = [
  "node_name",
  "hostname",
  "version",
  "pid",
  "start_time",
  "status",
  "registered",
  "uptime",
  "cpu_percent",
  "memory_mb",
  "threads",
  "heartbeats",
  "registered_ms",
  "metrics",
  "desired_version",
  "reported_version",
  "in_sync",
];

/** Merges what the wire says about one instance; returns whether the filters' choices may have changed. */
export function upsert(fields) {
  const id = fields.instance_id;
  if (typeof id !== "string") return false;
  let inst = fleet.get(id);
  const added = !inst;
  if (added) {
    inst = { instance_id: id, heartbeatAt: null };
    fleet.set(id, inst);
  }
  const renamed =
    (fields.node_name !== undefined && fields.node_name !== inst.node_name) ||
    (fields.version !== undefined && fields.version !== inst.version);
  for (const key of FIELDS) {
    if (fields[key] !== undefined) inst[key] = fields[key];
  }
  if (fields.last_heartbeat_age_ms !== undefined) {
    // An age ages: keep the moment instead, so the table can count on between updates.
    inst.heartbeatAt = fields.last_heartbeat_age_ms == null ? null : Date.now() - fields.last_heartbeat_age_ms;
  }
  return added || renamed;
}

/** Replaces the whole fleet with `GET /api/nodes`. */
export async function loadFleet() {
  const list = await api("/api/nodes");
  fleet.clear();
  for (const inst of list) upsert(inst);
  invalidate("fleet", "options");
}

/** At most this many rows are in the page: enough to read, few enough to stay fast at 10,000 instances. */
const MAX_ROWS = 500;

const filters = { text: "", node: "", status: "", version: "" };
const sort = { key: "instance", descending: false };

/**
 * The table's columns: `value` is what sorting compares (null: unknown, sorted last either way),
 * `text` what the cell shows.
 */
const COLUMNS = [
  { key: "instance", label: "Instance", value: (i) => i.instance_id },
  { key: "node", label: "Node", value: (i) => i.node_name, text: (i) => i.node_name ?? "" },
  { key: "status", label: "Status", numeric: true, value: (i) => STATUSES.indexOf(i.status) + 1 || null },
  { key: "version", label: "Version", value: (i) => i.version, text: (i) => i.version || DASH },
  { key: "host", label: "Host", value: (i) => i.hostname, text: (i) => i.hostname || DASH },
  { key: "uptime", label: "Uptime", numeric: true, value: (i) => i.uptime, text: (i) => formatDuration(i.uptime) },
  { key: "cpu", label: "CPU", numeric: true, value: (i) => i.cpu_percent, text: (i) => formatCpu(i.cpu_percent) },
  { key: "memory", label: "Memory", numeric: true, value: (i) => i.memory_mb, text: (i) => formatMemory(i.memory_mb) },
  {
    key: "config",
    label: "Config",
    title: "Desired state (subnode config): in sync, or drifting from what is desired",
    // Drifting first when ascending: what needs a look.
    value: (i) => (i.in_sync == null ? null : i.in_sync ? 2 : 1),
    text: (i) => configText(i),
  },
  {
    key: "heartbeat",
    label: "Heartbeat",
    title: "Time since the last heartbeat",
    numeric: true,
    // Ascending is youngest first, like an age; every age grows alike, so the moment sorts the same.
    value: (i) => (i.heartbeatAt == null ? null : -i.heartbeatAt),
    text: (i) => formatAge(heartbeatAge(i)),
  },
];

/** An instance's desired state in a word: nothing desired and nothing reported, in sync, or drifting. */
export function configText(inst) {
  if (inst.in_sync == null || (inst.in_sync && !inst.desired_version)) return DASH;
  return inst.in_sync ? "in sync" : "drift";
}

/** The instances that pass the filters, sorted: the first MAX_ROWS of them are drawn. */
let matching = [];
const counts = { all: 0, online: 0, missing: 0, lost: 0, offline: 0 };

function passes(inst, query) {
  if (filters.node && inst.node_name !== filters.node) return false;
  if (filters.status && inst.status !== filters.status) return false;
  if (filters.version && inst.version !== filters.version) return false;
  if (!query) return true;
  return [inst.instance_id, inst.node_name, inst.hostname, inst.version].some(
    (field) => typeof field === "string" && field.toLowerCase().includes(query),
  );
}

/** Counts the fleet by status and picks and sorts the rows that pass the filters. */
function selectRows() {
  const query = filters.text.trim().toLowerCase();
  const rows = [];
  for (const key of Object.keys(counts)) counts[key] = 0;
  for (const inst of fleet.values()) {
    counts.all += 1;
    if (Object.hasOwn(counts, inst.status)) counts[inst.status] += 1;
    if (passes(inst, query)) rows.push(inst);
  }
  matching = sortRows(rows);
}

/** The rows in the chosen order; each row's keys are made once, not once per comparison. */
function sortRows(rows) {
  const column = COLUMNS.find((c) => c.key === sort.key) ?? COLUMNS[0];
  const sign = sort.descending ? -1 : 1;
  const keyed = rows.map((inst) => {
    const value = column.value(inst);
    const known = value != null && value !== "";
    return { inst, id: sortKey(inst.instance_id), value: known ? (column.numeric ? value : sortKey(value)) : null };
  });
  keyed.sort((a, b) => {
    // Unknown values go last whichever way the column is sorted.
    if ((a.value === null) !== (b.value === null)) return a.value === null ? 1 : -1;
    const order = a.value === null ? 0 : compareKeys(a.value, b.value);
    // Ties in instance order, so rows with equal values do not swap places on every update.
    return order ? sign * order : compareKeys(a.id, b.id);
  });
  return keyed.map((k) => k.inst);
}

/** Rows in the page by instance id: their <tr> and the cells a frame updates. */
const rowsShown = new Map();

function makeRow(id) {
  const link = instanceLink(id);
  const badge = el("span", { class: "badge" });
  const cells = {};
  const tds = COLUMNS.map((column) => {
    const td = el("td", { class: `c-${column.key}` });
    if (column.key === "instance") td.append(link);
    else if (column.key === "status") td.append(badge);
    else cells[column.key] = td;
    return td;
  });
  return { tr: el("tr", { "data-id": id }, tds), badge, cells };
}

export function setBadge(badge, status) {
  setAttr(badge, "class", `badge tone-${statusTone(status)}`);
  setText(badge, status ?? "unknown");
}

function patchRow(row, inst) {
  setBadge(row.badge, inst.status);
  for (const column of COLUMNS) {
    const cell = row.cells[column.key];
    if (!cell) continue;
    const text = column.text(inst);
    setText(cell, text);
    // Long versions and host names are cut with an ellipsis; the full text is one hover away.
    if (column.key === "version" || column.key === "host") setAttr(cell, "title", text);
    if (column.key === "config") {
      cell.classList.toggle("drift", inst.in_sync === false);
      setAttr(cell, "title", `desired version ${inst.desired_version ?? 0}, reported ${inst.reported_version ?? "none"}`);
    }
  }
}

/** Rows kept up to date above and below the visible ones, so a short scroll shows no stale value. */
const PATCH_MARGIN = 40;

/**
 * The indexes of the rows worth updating: those on screen and a margin around them. Every row
 * has the same height, so no row needs measuring but the first; the others catch up on scroll.
 */
function rowsInView(body) {
  const wrap = $("table-wrap");
  const height = body.firstElementChild?.offsetHeight || 38;
  const first = Math.floor(wrap.scrollTop / height) - PATCH_MARGIN;
  return [first, first + Math.ceil(wrap.clientHeight / height) + 2 * PATCH_MARGIN];
}

/** Brings the table's rows in line with `matching`, moving the rows already there and updating those in view. */
function drawTable() {
  const body = $("fleet-body");
  const shown = matching.slice(0, MAX_ROWS);
  const [low, high] = rowsInView(body);
  const keep = new Set();
  let cursor = body.firstChild;
  for (const [index, inst] of shown.entries()) {
    let row = rowsShown.get(inst.instance_id);
    if (!row) {
      row = makeRow(inst.instance_id);
      rowsShown.set(inst.instance_id, row);
      patchRow(row, inst);
    } else if (index >= low && index < high) {
      patchRow(row, inst);
    }
    keep.add(inst.instance_id);
    if (row.tr === cursor) cursor = cursor.nextSibling;
    else body.insertBefore(row.tr, cursor);
  }
  // Whatever is left after the last placed row is no longer shown.
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
  for (const id of rowsShown.keys()) if (!keep.has(id)) rowsShown.delete(id);
  drawCounts();
  drawSummary(shown.length);
}

function drawCounts() {
  for (const key of Object.keys(counts)) setText($(`count-${key}`), integer.format(counts[key]));
  for (const button of document.querySelectorAll("#counts .count")) {
    button.classList.toggle("active", button.dataset.status === filters.status && filters.status !== "");
  }
}

function drawSummary(shown) {
  const total = fleet.size;
  const filtered = matching.length !== total;
  setText(
    $("fleet-summary"),
    filtered
      ? `${integer.format(matching.length)} of ${integer.format(total)} instances`
      : `${integer.format(total)} instance${total === 1 ? "" : "s"}`,
  );
  const empty = $("fleet-empty");
  empty.hidden = shown > 0;
  setText(
    empty,
    total === 0
      ? "No instances yet: nodes appear here as soon as they register."
      : "No instance matches these filters.",
  );
  const more = $("fleet-more");
  more.hidden = matching.length <= shown;
  setText(
    more,
    `Showing the first ${integer.format(shown)} of ${integer.format(matching.length)} matching instances: ` +
      "narrow the filters or search to see the others.",
  );
}

function drawHead() {
  fill(
    $("fleet-cols"),
    COLUMNS.map((c) => el("col", { class: `col-${c.key}` })),
  );
  fill(
    $("fleet-head"),
    COLUMNS.map((column) => {
      const active = sort.key === column.key;
      const ariaSort = active ? (sort.descending ? "descending" : "ascending") : "none";
      const arrow = active ? (sort.descending ? "↓" : "↑") : "";
      return el(
        "th",
        { class: `c-${column.key}`, "aria-sort": ariaSort, scope: "col", title: column.title },
        el("button", { type: "button", "data-sort": column.key }, column.label, el("span", { class: "arrow" }, arrow)),
      );
    }),
  );
}

/** The choices of the node and version filters (and the send form's), from the fleet. */
function drawOptions() {
  const nodes = new Set();
  const versions = new Set();
  for (const inst of fleet.values()) {
    if (inst.node_name) nodes.add(inst.node_name);
    if (inst.version) versions.add(inst.version);
  }
  const sorted = (set) => naturally([...set]);
  fillSelect($("f-node"), sorted(nodes), "All nodes");
  fillSelect($("f-version"), sorted(versions), "All versions");
  fillSelect($("s-node"), sorted(nodes), null);
  fillSelect($("s-version"), sorted(versions), "any version");
  // The send form suggests instance ids; past a thousand a datalist helps nobody.
  const ids = naturally([...fleet.keys()]).slice(0, 1000);
  fillOptions($("instance-ids"), ids, null);
}

/** What each select or datalist last listed, so an unchanged list is not rebuilt. */
const listed = new WeakMap();

function fillSelect(select, values, anyLabel) {
  const current = select.value;
  // A chosen value whose instances went away stays selectable, so a filter never changes by itself.
  if (current && !values.includes(current)) values.push(current);
  fillOptions(select, values, anyLabel);
  select.value = current || (anyLabel == null ? (values[0] ?? "") : "");
}

function fillOptions(list, values, anyLabel) {
  const key = values.join("\n");
  if (listed.get(list) === key) return;
  listed.set(list, key);
  const options = values.map((v) => el("option", { value: v }, v));
  if (anyLabel != null) options.unshift(el("option", { value: "" }, anyLabel));
  fill(list, options);
}

export function setupFleet() {
  drawHead();
  $("fleet-head").addEventListener("click", (e) => {
    const key = e.target.closest("button[data-sort]")?.dataset.sort;
    if (!key) return;
    sort.descending = sort.key === key ? !sort.descending : false;
    sort.key = key;
    drawHead();
    invalidate("fleet");
  });
  // A click anywhere on a row opens its instance; the id's link does the same from the keyboard.
  $("fleet-body").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-id]");
    if (tr && !e.target.closest("a")) location.hash = instanceHref(tr.dataset.id);
  });
  const bind = (id, key, event) =>
    $(id).addEventListener(event, () => {
      filters[key] = $(id).value;
      invalidate("fleet");
    });
  // Rows scrolled into view may hold values from before they were out of it.
  $("table-wrap").addEventListener("scroll", () => invalidate("clock"), { passive: true });
  bind("f-text", "text", "input");
  bind("f-node", "node", "change");
  bind("f-status", "status", "change");
  bind("f-version", "version", "change");
  $("counts").addEventListener("click", (e) => {
    const button = e.target.closest(".count");
    if (!button) return;
    const status = button.dataset.status;
    filters.status = filters.status === status ? "" : status;
    $("f-status").value = filters.status;
    invalidate("fleet");
  });
  $("f-clear").addEventListener("click", () => {
    Object.assign(filters, { text: "", node: "", status: "", version: "" });
    for (const id of ["f-text", "f-node", "f-status", "f-version"]) $(id).value = "";
    invalidate("fleet");
  });
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest?.("input, textarea, select");
    if (e.key === "/" && !typing) {
      e.preventDefault();
      location.hash = "#/";
      $("f-text").focus();
    }
  });
}

// What a frame redraws of the fleet view: its filter choices, the rows that pass, the table.
draws(["options"], drawOptions);
draws(["fleet"], selectRows);
draws(["fleet", "clock"], drawTable);
