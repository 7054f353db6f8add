// The live event stream: the server-sent events that keep the page current, and the panel that lists them.

import { api } from "./api.js";
import { $, el, setText } from "./dom.js";
import { fleet, loadFleet, upsert } from "./fleet.js";
import { compactJson, formatClock, instanceLink, statusTone, verdictOf } from "./format.js";
import { draws, invalidate } from "./frame.js";
import { loadPage, page } from "./instance.js";
import { onResult } from "./send.js";

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
export function connectStream() {
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

draws(["events"], drawEvents);
