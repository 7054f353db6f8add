// The send form: a command to an instance, a node or a filtered set, with its results as they arrive.

import { api } from "./api.js";
import { $, el, fill, setText } from "./dom.js";
import { compactJson, instanceLink, integer, verdictOf } from "./format.js";
import { draws, invalidate } from "./frame.js";
import { loadPage, page } from "./instance.js";

/** The command in flight, or the last one: `{requestId, what, results: Map, outcome, error}`. */
let sending = null;

/** The payload templates the form suggests for commands that take parameters. */
const PARAMETER_HINTS = {
  echo: '{"text": "hello"}',
  set_heartbeat_interval: '{"seconds": 10}',
  cancel: '{"request_id": "…"}',
};

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
export function onResult(result) {
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
export function targetInstance(id) {
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

export function setupForm() {
  const form = $("send-form");
  form.addEventListener("submit", submitForm);
  form.addEventListener("input", checkForm);
  form.addEventListener("change", (e) => {
    if (e.target.name === "mode") showMode();
  });
  $("s-command").addEventListener("input", () => {
    const command = $("s-command").value.trim();
    // `cancel` names a running request: the one this form sent last is the likely one.
    const hint = command === "cancel" && sending ? `{"request_id": "${sending.requestId}"}` : PARAMETER_HINTS[command];
    $("s-params").placeholder = hint ?? "{}";
  });
  // Ctrl+Enter sends from the parameters box, where Enter is a new line.
  $("s-params").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  showMode();
}

draws(["send"], drawSendOutput);
