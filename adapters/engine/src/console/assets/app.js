// SubNodeSync operator console: the live fleet table, a page per instance, the send form and the
// event stream, all drawn from the console's JSON API (/api/...) and its server-sent events.
// Plain modern JavaScript with no build step and no libraries, under a CSP that allows no inline
// script or style. Laid out as `prettier --print-width 120` lays it out.
//
// Everything a node, the broker or the engine sends (instance ids, versions, host names, result
// messages and data, metrics) is untrusted. It reaches the page only through el() and svg(), as
// text nodes and attribute values: never as HTML.

// ---------------------------------------------------------------------------------------------
// DOM helpers

const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element with attributes (an `on...` function becomes a listener) and children (nodes or text). */
function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, made like el()'s. */
function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) {
      // Only this file's functions become handlers: a string here would be script made of data.
      if (typeof value !== "function") throw new TypeError(`${name}: expected a function`);
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (id) => document.getElementById(id);

/** Replaces a node's children, made as el() makes them (text as text, null and false skipped). */
function fill(node, ...children) {
  node.replaceChildren();
  return build(node, null, children);
}

/** Sets a node's text only when it differs: most cells do not change from one frame to the next. */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Sets an attribute only when it differs. */
function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

// ---------------------------------------------------------------------------------------------
// Formatting

const STATUSES = ["online", "missing", "lost", "offline"];
const DASH = "–";
const integer = new Intl.NumberFormat("en-US");

/** Keys already made by sortKey(); the same few thousand names come back every second. */
const sortKeys = new Map();

/**
 * Text as a key that orders with < the way people read it, host9 before host10: a collator
 * does the same but costs too much when 10,000 rows are sorted every second.
 */
function sortKey(text) {
  let key = sortKeys.get(text);
  if (key === undefined) {
    key = text.toLowerCase().replace(/\d+/g, (digits) => digits.padStart(16, "0"));
    if (sortKeys.size >= 100000) sortKeys.clear();
    sortKeys.set(text, key);
  }
  return key;
}

const compareKeys = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
const naturally = (list) => list.sort((a, b) => compareKeys(sortKey(a), sortKey(b)));

/** A status usable in a class name: anything else on the wire is shown, but styled as unknown. */
const statusTone = (status) => (STATUSES.includes(status) ? status : "unknown");

/** 3d 4h, 4h 12m, 12m 5s or 45s. */
function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return DASH;
  const s = Math.max(0, Math.floor(seconds));
  const [d, h, m, r] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60), s % 60];
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${r}s`;
  return `${r}s`;
}

const formatAge = (ms) => (ms == null ? DASH : `${formatDuration(ms / 1000)} ago`);
const formatCpu = (percent) => (percent == null ? DASH : `${percent.toFixed(1)}%`);

function formatMemory(mb) {
  if (mb == null) return DASH;
  return mb >= 10240 ? `${(mb / 1024).toFixed(1)} GiB` : `${integer.format(mb)} MiB`;
}

const pad = (n) => String(n).padStart(2, "0");
const formatClock = (date) => `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;

/** A local date and time from Unix milliseconds or an RFC 3339 text; other text as it is. */
function formatDateTime(value) {
  if (value == null || value === "") return DASH;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${formatClock(date)}`;
}

/** Any JSON value as one line of text. */
const compactJson = (value) => (typeof value === "string" ? value : JSON.stringify(value));

const instanceHref = (id) => `#/instance/${encodeURIComponent(id)}`;
const instanceLink = (id) => el("a", { href: instanceHref(id), class: "mono" }, id);

/** How long ago this browser last heard of the instance's heartbeat, in milliseconds. */
const heartbeatAge = (inst) => (inst.heartbeatAt == null ? null : Math.max(0, Date.now() - inst.heartbeatAt));

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** Calls the console's API; a body makes it a POST with the header the CSRF guard asks for. */
async function api(path, body) {
  const init = { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-Subnode-Request"] = "1";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError("the console cannot be reached", 0);
  }
  if (response.status === 401) {
    // The session ended (the engine restarted, or another login pushed it out).
    location.assign("/login");
    throw new ApiError("signed out", 401);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = typeof data?.error === "string" ? data.error : `HTTP ${response.status}`;
    throw new ApiError(message, response.status);
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// The fleet, as this page knows it

/** Instances by id: the API's objects, plus `heartbeatAt`, when the last heartbeat came by this browser's clock. */
const fleet = new Map();

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
];

/** Merges what the wire says about one instance; returns whether the filters' choices may have changed. */
function upsert(fields) {
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
async function loadFleet() {
  const list = await api("/api/nodes");
  fleet.clear();
  for (const inst of list) upsert(inst);
  invalidate("fleet", "options");
}

// ---------------------------------------------------------------------------------------------
// Drawing, batched per animation frame

/** What the next frame redraws: "fleet" (data changed), "clock" (ages moved on), "options", "events", "send". */
const dirty = new Set();
let frameRequested = false;

function invalidate(...parts) {
  for (const part of parts) dirty.add(part);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(drawFrame);
  }
}

function drawFrame() {
  frameRequested = false;
  const parts = new Set(dirty);
  dirty.clear();
  if (parts.has("options")) drawOptions();
  if (parts.has("fleet")) selectRows();
  if (parts.has("fleet") || parts.has("clock")) drawTable();
  if (parts.has("events")) drawEvents();
  if (parts.has("send")) drawSendOutput();
  if (page.id && (parts.has("fleet") || parts.has("clock"))) drawOverview();
}

// ---------------------------------------------------------------------------------------------
// The fleet table

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
    key: "heartbeat",
    label: "Heartbeat",
    title: "Time since the last heartbeat",
    numeric: true,
    // Ascending is youngest first, like an age; every age grows alike, so the moment sorts the same.
    value: (i) => (i.heartbeatAt == null ? null : -i.heartbeatAt),
    text: (i) => formatAge(heartbeatAge(i)),
  },
];

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

function setBadge(badge, status) {
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

function setupFleet() {
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

// ---------------------------------------------------------------------------------------------
// The live event stream

/** Events listed at once, newest first. */
const EVENTS_SHOWN = 200;
/** Events not yet drawn, oldest first: `{at, tone, kind, parts}`, parts being text or `{id}` for a link. */
let eventQueue = [];

function logEvent(tone, kind, ...parts) {
  eventQueue.push({ at: new Date(), tone, kind, parts });
  // Under a flood only the newest can be shown anyway.
  if (eventQueue.length > 2 * EVENTS_SHOWN) eventQueue = eventQueue.slice(-EVENTS_SHOWN);
  invalidate("events");
}

function drawEvents() {
  const list = $("events");
  const fresh = eventQueue.slice(-EVENTS_SHOWN);
  eventQueue = [];
  const items = fresh.reverse().map(({ at, tone, kind, parts }) =>
    el(
      "li",
      { class: `event tone-${tone}` },
      el("time", { datetime: at.toISOString() }, formatClock(at)),
      el("span", { class: "kind" }, kind),
      el(
        "span",
        { class: "what" },
        parts.map((p) => (typeof p === "object" ? instanceLink(p.id) : p)),
      ),
    ),
  );
  list.prepend(...items);
  while (list.childElementCount > EVENTS_SHOWN) list.lastElementChild.remove();
  setText($("events-count"), list.childElementCount ? `latest ${list.childElementCount}` : "");
}

/** How a result reads: ok, FAILED, or progress for an update before the final one. */
function verdictOf(result) {
  if (result.state !== "done") return { tone: "info", text: "progress" };
  return result.success ? { tone: "ok", text: "ok" } : { tone: "bad", text: "FAILED" };
}

/** Applies one event from the stream to the page. */
function onEvent(event) {
  switch (event.event) {
    case "instances": {
      let reshaped = false;
      for (const row of event.instances ?? []) reshaped = upsert(row) || reshaped;
      invalidate("fleet");
      if (reshaped) invalidate("options");
      // Rows only say what changed: a different total means this page missed an event.
      if (event.total !== fleet.size) resyncSoon();
      break;
    }
    case "registered": {
      const fields = {
        instance_id: event.instance_id,
        node_name: event.node_name,
        version: event.version,
        registered: true,
      };
      // The engine counts a new instance online from its first message; the next rows say more.
      if (!fleet.has(event.instance_id)) fields.status = "online";
      if (upsert(fields)) invalidate("options");
      invalidate("fleet");
      logEvent("info", "registered", { id: event.instance_id }, ` ${event.node_name} ${event.version}`);
      break;
    }
    case "deregistered":
      upsert({ instance_id: event.instance_id, registered: false });
      invalidate("fleet");
      logEvent("muted", "deregistered", { id: event.instance_id }, " cleared its registration (a clean stop)");
      break;
    case "status": {
      upsert({ instance_id: event.instance_id, status: event.to });
      invalidate("fleet");
      logEvent(statusTone(event.to), "status", { id: event.instance_id }, ` ${event.from} → ${event.to}`);
      break;
    }
    case "result": {
      const r = event.result ?? {};
      onResult(r);
      const verdict = verdictOf(r);
      logEvent(verdict.tone, "result", { id: r.instance_id }, ` ${r.command} ${verdict.text}: ${r.message ?? ""}`);
      break;
    }
    case "pruned":
      for (const id of event.instance_ids ?? []) fleet.delete(id);
      invalidate("fleet", "options");
      logEvent(
        "muted",
        "pruned",
        `${(event.instance_ids ?? []).length} instance(s): `,
        (event.instance_ids ?? []).join(", "),
      );
      break;
    case "broker_connected":
      setBroker(true, null);
      logEvent("ok", "broker", "the engine connected to the broker");
      break;
    case "broker_disconnected":
      setBroker(false, event.error);
      logEvent("bad", "broker", `the engine lost the broker: ${event.error}; retrying in ${event.retry_in_ms} ms`);
      break;
    case "database_failed":
      logEvent(
        "bad",
        "database",
        `cannot write: ${event.error}; ${event.unsaved_rows} row(s) kept, retrying in ${event.retry_in_ms} ms`,
      );
      break;
    case "database_recovered":
      logEvent("ok", "database", `written again (${event.rows} row(s)), nothing lost`);
      break;
    case "lagged":
      logEvent("warn", "stream", `this page fell behind and missed ${event.skipped} event(s): reloading the fleet`);
      resyncSoon();
      break;
    default:
      // A kind this page does not know yet: shown as it came rather than dropped.
      logEvent("muted", String(event.event ?? "event"), compactJson(event));
  }
}

const STREAM_URL = "/api/events?instances=1";
let stream = null;
let retryDelay = 1000;

/** Opens the event stream; the browser reconnects by itself after a network error, this after a refusal. */
function connectStream() {
  stream = new EventSource(STREAM_URL);
  stream.addEventListener("open", () => {
    retryDelay = 1000;
    setStream("live");
    // Whatever happened while the stream was down is in the snapshot.
    resync();
  });
  stream.addEventListener("message", (e) => {
    let event;
    try {
      event = JSON.parse(e.data);
    } catch {
      return;
    }
    onEvent(event);
  });
  stream.addEventListener("error", () => {
    setBroker(null, null);
    if (stream.readyState === EventSource.CLOSED) {
      // Refused (a 401 or 403, or the server gone mid-handshake): the browser gave up, so this page retries.
      setStream("down");
      stream.close();
      setTimeout(connectStream, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
      // The refusal may mean the session ended: api() takes the page to the login form then.
      api("/api/engine").catch(() => {});
    } else {
      setStream("reconnecting");
    }
  });
}

function setStream(state) {
  const [tone, text] = {
    live: ["online", "Live"],
    reconnecting: ["missing", "Reconnecting…"],
    down: ["lost", "Stream down"],
  }[state];
  const pill = $("stream-state");
  pill.className = `pill tone-${tone}`;
  setText(pill.querySelector(".pill-text"), text);
  $("stream-banner").hidden = state === "live";
}

/** connected: true, false, or null when this page cannot know (its stream is down). */
function setBroker(connected, problem) {
  const pill = $("broker-state");
  const tone = connected == null ? "unknown" : connected ? "online" : "lost";
  pill.className = `pill tone-${tone}`;
  setText(
    pill.querySelector(".pill-text"),
    connected == null ? "Broker: unknown" : connected ? "Broker connected" : "Broker disconnected",
  );
  pill.title = problem
    ? `The engine's connection to the broker: ${problem}`
    : "The engine's connection to the MQTT broker";
}

let resyncing = null;
let resyncTimer = 0;

/** Reloads the fleet and the engine's state; one at a time. */
function resync() {
  resyncing ??= Promise.all([
    loadFleet(),
    api("/api/engine").then((e) => setBroker(Boolean(e.connected), e.connection_problem)),
    page.id ? loadPage() : null,
  ])
    .catch((e) => logEvent("bad", "console", `cannot reload: ${e.message}`))
    .finally(() => {
      resyncing = null;
    });
  return resyncing;
}

/** A resync soon, not at once: one missed event often comes with others. */
function resyncSoon() {
  if (!resyncTimer)
    resyncTimer = setTimeout(() => {
      resyncTimer = 0;
      resync();
    }, 2000);
}

// ---------------------------------------------------------------------------------------------
// The send form

/** The command in flight, or the last one: `{requestId, what, results: Map, outcome, error}`. */
let sending = null;

/** The payload templates the form suggests for commands that take parameters. */
const PARAMETER_HINTS = { echo: '{"text": "hello"}', set_heartbeat_interval: '{"seconds": 10}' };

/** 1–64 printable characters the API accepts as a request id, known before the POST answers. */
function newRequestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `ui-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const formMode = () => document.querySelector("#send-form input[name=mode]:checked").value;

/** The POST body from the form, or what to fix: `{field, problem}`, the field's id and why. */
function readForm() {
  const mode = formMode();
  const body = { command: $("s-command").value.trim() };
  if (mode === "instance") {
    body.target = $("s-instance").value.trim();
    if (!body.target) return { field: "s-instance", problem: "Choose an instance to send to." };
  } else {
    const node = $("s-node").value;
    if (mode === "node" && !node) return { field: "s-node", problem: "No node to broadcast to yet." };
    body.target = mode === "node" ? `${node}/*` : "*";
    const where = { version: $("s-version").value, host: $("s-host").value.trim(), status: $("s-status").value };
    for (const key of Object.keys(where)) if (!where[key]) delete where[key];
    if (Object.keys(where).length) body.where = where;
  }
  if (!body.command) return { field: "s-command", problem: "Name a command, such as ping." };
  const params = $("s-params").value.trim();
  if (params) {
    let parsed;
    try {
      parsed = JSON.parse(params);
    } catch (e) {
      return { field: "s-params", problem: `Parameters are not JSON: ${e.message}` };
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      return { field: "s-params", problem: 'Parameters must be a JSON object, such as {"text": "hi"}.' };
    }
    body.parameters = parsed;
  }
  const timeout = $("s-timeout").value.trim();
  // The server's own grammar: a number with ms, s, m, h or d (seconds without one), never zero.
  if (!/^\d+\s*(ms|s|m|h|d)?$/.test(timeout) || /^0+\s*\D*$/.test(timeout)) {
    return { field: "s-timeout", problem: "Timeout: a duration such as 500ms, 10s or 2m." };
  }
  body.timeout = timeout;
  return { body };
}

/** Marks `field` as the one to fix and says why; no field, no problem. */
function showProblem(field, problem) {
  setText($("s-problem"), problem ?? "");
  for (const id of ["s-instance", "s-node", "s-command", "s-params", "s-timeout"]) {
    $(id).setAttribute("aria-invalid", String(id === field));
  }
}

/** Says what is wrong with the form as it is typed, and whether it can be sent. */
function checkForm() {
  const { field, problem } = readForm();
  // A field still empty is not worth a red line before the first try.
  if (field && !$(field).value.trim()) showProblem(null, null);
  else showProblem(field, problem);
  $("s-submit").disabled = Boolean(sending && !sending.done);
}

async function submitForm(e) {
  e.preventDefault();
  const { body, field, problem } = readForm();
  if (problem) {
    showProblem(field, problem);
    return;
  }
  body.request_id = newRequestId();
  const where = body.where
    ? ` where ${Object.entries(body.where)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}`
    : "";
  sending = { requestId: body.request_id, what: `${body.command} to ${body.target}${where}`, results: new Map() };
  checkForm();
  invalidate("send");
  try {
    const answer = await api("/api/commands", body);
    for (const r of answer.results ?? []) sending.results.set(r.instance_id, r);
    sending.outcome = answer.outcome;
  } catch (error) {
    sending.error = error.message;
  }
  sending.done = true;
  checkForm();
  invalidate("send");
  // The instance's page lists its commands: this one is one of them now.
  if (page.id && sending.results.has(page.id)) loadPage();
}

/** A result from the stream for the command in flight shows at once, before the POST answers. */
function onResult(result) {
  if (!sending || sending.done || result.request_id !== sending.requestId) return;
  const seen = sending.results.get(result.instance_id);
  // A late progress update must not hide the final result.
  if (seen?.state === "done" && result.state !== "done") return;
  sending.results.set(result.instance_id, result);
  invalidate("send");
}

/** Results listed under the form at once; the count says how many more there are. */
const RESULTS_SHOWN = 100;

function drawSendOutput() {
  const out = $("send-output");
  const results = [...sending.results.values()];
  const items = results.slice(0, RESULTS_SHOWN).map((r) => {
    const verdict = verdictOf(r);
    return el(
      "li",
      { class: `result tone-${verdict.tone}` },
      el(
        "div",
        { class: "result-head" },
        instanceLink(r.instance_id ?? ""),
        el("span", { class: `verdict tone-${verdict.tone}` }, verdict.text),
      ),
      el("div", { class: "message" }, r.message ?? ""),
      r.data != null && el("code", { class: "data" }, compactJson(r.data)),
    );
  });
  if (results.length > RESULTS_SHOWN) {
    items.push(el("li", { class: "result more" }, `and ${integer.format(results.length - RESULTS_SHOWN)} more`));
  }
  fill(
    out,
    el(
      "div",
      { class: "sent" },
      el("span", { class: "sent-what" }, sending.what),
      el("span", { class: "mono request-id", title: "request id" }, sending.requestId),
    ),
    sending.done
      ? null
      : el(
          "p",
          { class: "waiting" },
          el("span", { class: "spinner", "aria-hidden": "true" }),
          `Waiting for answers… ${results.length ? `${integer.format(results.length)} so far` : ""}`,
        ),
    items.length ? el("ol", { class: "results" }, items) : null,
    sending.outcome ? outcomeLine(sending.outcome) : null,
    sending.error ? el("p", { class: "error", role: "alert" }, sending.error) : null,
  );
}

function outcomeLine(outcome) {
  const verdict = outcome.verdict ?? "unknown";
  const tone = { succeeded: "ok", failed: "bad", timed_out: "warn" }[verdict] ?? "muted";
  const expected = outcome.expected?.length ?? 0;
  const late = outcome.timed_out ?? [];
  const parts = [
    `${integer.format(outcome.answered ?? 0)} of ${integer.format(expected)} answered`,
    outcome.failed ? `${integer.format(outcome.failed)} failed` : null,
    late.length ? `${integer.format(late.length)} timed out` : null,
    outcome.attempts > 1 ? `${outcome.attempts} attempts` : null,
  ].filter(Boolean);
  return el(
    "div",
    { class: `outcome tone-${tone}` },
    el("span", { class: "verdict" }, verdict.replace("_", " ")),
    el("span", null, parts.join(" · ")),
    late.length
      ? el(
          "div",
          { class: "late" },
          "No answer from: ",
          late.slice(0, 10).join(", "),
          late.length > 10 ? ` and ${late.length - 10} more` : "",
        )
      : null,
  );
}

/** Points the form at one instance, from its page. */
function targetInstance(id) {
  document.querySelector("#send-form input[value=instance]").checked = true;
  $("s-instance").value = id;
  showMode();
  $("s-command").focus();
  $("s-command").select();
}

/** Shows the fields the chosen kind of target needs. */
function showMode() {
  const mode = formMode();
  $("s-instance-field").hidden = mode !== "instance";
  $("s-node-field").hidden = mode !== "node";
  $("s-where").hidden = mode === "instance";
  checkForm();
}

function setupForm() {
  const form = $("send-form");
  form.addEventListener("submit", submitForm);
  form.addEventListener("input", checkForm);
  form.addEventListener("change", (e) => {
    if (e.target.name === "mode") showMode();
  });
  $("s-command").addEventListener("input", () => {
    $("s-params").placeholder = PARAMETER_HINTS[$("s-command").value.trim()] ?? "{}";
  });
  // Ctrl+Enter sends from the parameters box, where Enter is a new line.
  $("s-params").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  showMode();
}

// ---------------------------------------------------------------------------------------------
// An instance's page

/** How often the page asks again for the instance's metrics, chart and history. */
const PAGE_REFRESH_MS = 5000;
const HOUR_MS = 3600 * 1000;
/** Samples further apart than this (two missed ones at the console's 30 s spacing) leave a gap in the chart, not a slope. */
const CHART_GAP_MS = 90 * 1000;

/** The instance shown: its id, the timer that refreshes it, and the parts of its page to fill. */
const page = { id: null, timer: 0, parts: null };

function showInstance(id) {
  $("fleet-view").hidden = true;
  $("instance-view").hidden = false;
  if (page.id === id) return;
  clearInterval(page.timer);
  Object.assign(page, { id, parts: pageSkeleton(id) });
  document.title = `${id} · SubNodeSync console`;
  loadPage();
  page.timer = setInterval(loadPage, PAGE_REFRESH_MS);
}

function showFleet() {
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
async function loadPage() {
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
  drawCharts(detail.trend ?? []);
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

// ---------------------------------------------------------------------------------------------
// The chart: inline SVG, one per series

const CHART = { width: 560, height: 132, left: 52, right: 10, top: 10, bottom: 22 };

function drawCharts(trend) {
  const last = trend.at(-1);
  fill(
    page.parts.legend,
    el("span", { class: "key cpu" }, "CPU ", el("b", null, last ? formatCpu(last.cpu_percent) : DASH)),
    el("span", { class: "key memory" }, "Memory ", el("b", null, last ? formatMemory(last.memory_mb) : DASH)),
  );
  if (!trend.length) {
    fill(
      page.parts.charts,
      el("p", { class: "muted" }, "No samples yet: the console keeps one every 30 s from the heartbeats, for an hour."),
    );
    return;
  }
  fill(
    page.parts.charts,
    lineChart(trend, (s) => s.cpu_percent, "%", "cpu", "CPU"),
    lineChart(trend, (s) => s.memory_mb, " MiB", "memory", "Memory"),
  );
}

/** 1, 2, 2.5 or 5 times a power of ten: the smallest at or above `v`, for the axis' top. */
function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((n) => n >= v);
}

/** An hour of `samples` as a line over a faint area, with its scale on the left and minutes below. */
function lineChart(samples, pick, unit, tone, label) {
  const { width, height, left, right, top, bottom } = CHART;
  const [plotWidth, plotHeight] = [width - left - right, height - top - bottom];
  const format = (v) => `${Number(v.toFixed(2))}${unit}`;
  // The samples' clock is the server's: the window ends at the newest one if it is ahead of ours.
  const end = Math.max(Date.now(), samples.at(-1).at_ms);
  const start = end - HOUR_MS;
  const points = samples.filter((s) => s.at_ms >= start && pick(s) != null).map((s) => [s.at_ms, pick(s)]);
  const top_ = niceCeiling(Math.max(...points.map(([, v]) => v)) * 1.1);
  const x = (t) => left + ((t - start) / HOUR_MS) * plotWidth;
  const y = (v) => top + plotHeight - (v / top_) * plotHeight;
  const grid = [0, top_ / 2, top_].map((v) => [
    svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
    svg("text", { class: "tick", x: left - 8, y: y(v) + 4, "text-anchor": "end" }, format(v)),
  ]);
  const minutes = [60, 45, 30, 15, 0].map((m, n, all) =>
    svg(
      "text",
      {
        class: "tick",
        x: x(end - m * 60000),
        y: height - 4,
        "text-anchor": n === 0 ? "start" : n === all.length - 1 ? "end" : "middle",
      },
      m ? `−${m} min` : "now",
    ),
  );
  const segments = [];
  for (const p of points) {
    const segment = segments.at(-1);
    if (segment && p[0] - segment.at(-1)[0] <= CHART_GAP_MS) segment.push(p);
    else segments.push([p]);
  }
  const path = (segment) =>
    segment.map(([t, v], n) => `${n ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
  const base = y(0).toFixed(1);
  const shapes = segments.map((segment) =>
    segment.length === 1
      ? svg("circle", { class: "point", cx: x(segment[0][0]), cy: y(segment[0][1]), r: 2.5 })
      : [
          svg("path", {
            class: "area",
            d: `${path(segment)}L${x(segment.at(-1)[0]).toFixed(1)},${base}L${x(segment[0][0]).toFixed(1)},${base}Z`,
          }),
          svg("path", { class: "line", d: path(segment) }),
        ],
  );
  const [lastT, lastV] = points.at(-1) ?? [end, 0];
  return svg(
    "svg",
    {
      class: `chart ${tone}`,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${label} over the last hour`,
    },
    svg("title", null, `${label}: ${format(lastV)} now`),
    grid,
    minutes,
    shapes,
    points.length ? svg("circle", { class: "now", cx: x(lastT), cy: y(lastV), r: 3.5 }) : null,
  );
}

// ---------------------------------------------------------------------------------------------
// Routing and start

function route() {
  const match = location.hash.match(/^#\/instance\/(.+)$/);
  let id = null;
  try {
    id = match ? decodeURIComponent(match[1]) : null;
  } catch {
    // A malformed link: the fleet it is.
  }
  if (id) showInstance(id);
  else showFleet();
}

function start() {
  setupFleet();
  setupForm();
  window.addEventListener("hashchange", route);
  route();
  connectStream();
  // Ages grow between updates: redraw them every second, whatever arrives.
  setInterval(() => invalidate("clock"), 1000);
}

start();
