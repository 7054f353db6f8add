// How values read on the page: durations, ages, sizes, times, statuses, and sort keys that put host9 before host10.

import { el } from "./dom.js";

export const STATUSES = ["online", "missing", "lost", "offline"];
export const DASH = "–";
export const integer = new Intl.NumberFormat("en-US");

/** Keys already made by sortKey(); the same few thousand names come back every second. */
const sortKeys = new Map();

/**
 * Text as a key that orders with < the way people read it, host9 before host10: a collator
 * does the same but costs too much when 10,000 rows are sorted every second.
 */
export function sortKey(text) {
  let key = sortKeys.get(text);
  if (key === undefined) {
    key = text.toLowerCase().replace(/\d+/g, (digits) => digits.padStart(16, "0"));
    if (sortKeys.size >= 100000) sortKeys.clear();
    sortKeys.set(text, key);
  }
  return key;
}

export const compareKeys = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
export const naturally = (list) => list.sort((a, b) => compareKeys(sortKey(a), sortKey(b)));

/** A status usable in a class name: anything else on the wire is shown, but styled as unknown. */
export const statusTone = (status) => (STATUSES.includes(status) ? status : "unknown");

/** 3d 4h, 4h 12m, 12m 5s or 45s. */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return DASH;
  const s = Math.max(0, Math.floor(seconds));
  const [d, h, m, r] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60), s % 60];
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${r}s`;
  return `${r}s`;
}

export const formatAge = (ms) => (ms == null ? DASH : `${formatDuration(ms / 1000)} ago`);
export const formatCpu = (percent) => (percent == null ? DASH : `${percent.toFixed(1)}%`);

export function formatMemory(mb) {
  if (mb == null) return DASH;
  return mb >= 10240 ? `${(mb / 1024).toFixed(1)} GiB` : `${integer.format(mb)} MiB`;
}

const pad = (n) => String(n).padStart(2, "0");
export const formatClock = (date) => `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;

/** A local date and time from Unix milliseconds or an RFC 3339 text; other text as it is. */
export function formatDateTime(value) {
  if (value == null || value === "") return DASH;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${formatClock(date)}`;
}

/** Any JSON value as one line of text. */
export const compactJson = (value) => (typeof value === "string" ? value : JSON.stringify(value));

export const instanceHref = (id) => `#/instance/${encodeURIComponent(id)}`;
export const instanceLink = (id) => el("a", { href: instanceHref(id), class: "mono" }, id);

/** How long ago this browser last heard of the instance's heartbeat, in milliseconds. */
export const heartbeatAge = (inst) => (inst.heartbeatAt == null ? null : Math.max(0, Date.now() - inst.heartbeatAt));

/** How a result reads: ok, FAILED, or progress for an update before the final one. */
export function verdictOf(result) {
  if (result.state !== "done") return { tone: "info", text: "progress" };
  return result.success ? { tone: "ok", text: "ok" } : { tone: "bad", text: "FAILED" };
}
