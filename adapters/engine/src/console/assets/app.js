// SubNodeSync operator console: the live fleet table, a page per instance, the send form and the
// event stream, all drawn from the console's JSON API (/api/...) and its server-sent events.
// Plain modern JavaScript with no build step and no libraries, under a CSP that allows no inline
// script or style. Laid out as `prettier --print-width 120` lays it out.
//
// Everything a node, the broker or the engine sends (instance ids, versions, host names, result
// messages and data, metrics) is untrusted. It reaches the page only through el() and svg(), as
// text nodes and attribute values: never as HTML.
//
// This module routes between the fleet and an instance's page and starts the rest; each part of
// the page is its own module.

import { connectStream } from "./events.js";
import { setupFleet } from "./fleet.js";
import { invalidate } from "./frame.js";
import { showFleet, showInstance } from "./instance.js";
import { setupForm } from "./send.js";

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
