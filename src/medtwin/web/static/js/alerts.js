// The alerts panel of a patient: unresolved alerts first (most severe first, as the API orders them),
// acknowledge / resolve buttons (new alerts are announced by worklist.js, on every screen). A serious alert
// whose condition has cleared stays open until a person acknowledges it (the server decides which:
// ``needs_person``); it is marked "condition cleared at HH:MM" and acknowledging it closes it.
import { call, errorText } from "./api.js";
import { announce, ago, clear, clock, el, news2Badge, news2Label, severityBadge, throttle } from "./dom.js";
import { subscribe } from "./events.js";
import { alertDescription, alertLabel, news2Band } from "./vocab.js";

export function listOf(data) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data.items)) return data.items;
  if (data && Array.isArray(data.alerts)) return data.alerts;
  return [];
}

/** POST acknowledge|resolve, announce it, then reload; errors go to ``note``. */
export async function transition(alert, action, button, note, reload) {
  button.disabled = true;
  try {
    const after = await call(`/alerts/${encodeURIComponent(alert.id)}/${action}`, { method: "POST" });
    const done = after && after.status === "resolved" && action === "acknowledge" ? "acknowledged and closed"
      : action === "acknowledge" ? "acknowledged" : "resolved";
    announce(`Alert ${done}: ${alert.message}`, { toast: false });
    note.textContent = `${done[0].toUpperCase()}${done.slice(1)}: ${alert.message}`;
    await reload();
  } catch (error) {
    note.textContent = errorText(error);
    button.disabled = false;
  }
}

/** A NEWS2 alert's own score, band and time, and its history (time, score, band) as it escalated and
 *  de-escalated; labelled so it is not read as the patient's current score (the live tile's). */
function news2Detail(a) {
  const d = a.details || {};
  if (a.rule !== "news2" || d.aggregate === undefined) return null;
  const history = Array.isArray(d.history) ? d.history : [];
  const peak = d.peak_severity && d.peak_severity !== a.severity ? ` · peak severity ${d.peak_severity}` : "";
  return el("div", { class: "alert-news2" },
    el("p", { class: "alert-score" }, el("span", { class: "label" }, "Alert's score: "),
       news2Badge({ score: d.aggregate, band: d.risk }), ` ${news2Label(d.risk)} at ${clock(d.at || a.last_seen_at)}`,
       d.complete === false ? " (incomplete set)" : "", peak),
    history.length > 1 ? el("p", { class: "alert-history sub" }, "Score history: ",
      history.map(([t, score, band], i) => el("span", { class: "hist", dataset: { score: String(score), band } },
        i ? " → " : "", `${score} (${band}) ${clock(t)}`))) : null);
}

/** The reading a glucose alert's text quotes, with its time (details.cgm_time: the forecast's issued_at), so
 *  "CGM 87 mg/dL" in the alert is not read as the reading the tile shows now. */
function readingBasis(a) {
  const d = a.details || {};
  return d.cgm_time && d.cgm_mg_dl !== null && d.cgm_mg_dl !== undefined
    ? el("p", { class: "alert-basis sub", dataset: { cgmTime: d.cgm_time } }, `from the CGM reading at ${clock(d.cgm_time)}`) : null;
}

/** Why the badge says what it does: for NEWS2 the band it maps from (vocabulary news2.risk_bands). */
function severityTitle(a) {
  const band = a.rule === "news2" && a.details ? news2Band(a.details.risk) : null;
  return band ? `${a.severity} alert: NEWS2 ${band.label} (RCP 2017: ${band.trigger})` : `${a.severity} alert`;
}

/** One alert as a list item with its actions; ``patient`` (optional) is a link to the patient's page. */
export function alertItem(a, act, patient = null) {
  const actions = el("div", { class: "alert-actions" });
  if (a.status === "open") {
    actions.append(el("button", { type: "button", class: "secondary small", "aria-label": `Acknowledge: ${a.message}`,
      on: { click: (e) => act(a, "acknowledge", e.currentTarget) } }, "Acknowledge"));
  }
  if (a.status !== "resolved") {
    actions.append(el("button", { type: "button", class: "secondary small", "aria-label": `Resolve: ${a.message}`,
      on: { click: (e) => act(a, "resolve", e.currentTarget) } }, "Resolve"));
  }
  const who = a.status === "acknowledged" ? ` · acknowledged by ${a.acknowledged_by || "?"} ${ago(a.acknowledged_at)}`
    : a.status === "resolved" ? ` · resolved by ${a.resolved_by || "?"} ${ago(a.resolved_at)}` : "";
  const cleared = a.condition_cleared_at && a.status !== "resolved"
    ? el("p", { class: "alert-cleared", title: "The condition no longer holds; a person acknowledges the alert to close it." },
         `condition cleared at ${clock(a.condition_cleared_at)}`, a.status === "open" ? " · awaiting acknowledgement" : "")
    : null;
  return el("li", { class: `alert-item status-${a.status} sev-border-${a.severity}${cleared ? " cleared" : ""}`,
                    dataset: { id: a.id, status: a.status, cleared: a.condition_cleared_at ? "true" : "false" } },
    el("div", { class: "alert-top" }, severityBadge(a.severity, undefined, "", severityTitle(a)), " ",
       el("strong", { title: alertDescription(a.rule) }, alertLabel(a.rule)), el("span", { class: "alert-status" }, a.status)),
    cleared,
    patient ? el("p", { class: "alert-patient" }, el("a", { href: `#/patients/${encodeURIComponent(a.patient_id)}` }, patient)) : null,
    el("p", { class: "alert-msg" }, a.message),
    readingBasis(a),
    news2Detail(a),
    el("p", { class: "sub" }, `since ${ago(a.opened_at)}`, a.occurrences > 1 ? ` · ${a.occurrences}×` : "",
       ` · last ${ago(a.last_seen_at)}`, who),
    actions);
}

export function mountAlerts(box, ctx) {
  const id = ctx.id;
  let showAll = false;
  let destroyed = false;
  const list = el("ul", { class: "alert-list", id: "alert-list" });
  const note = el("p", { class: "muted", role: "status" });
  const toggle = el("button", { type: "button", class: "link", "aria-pressed": "false", on: { click: () => {
    showAll = !showAll;
    toggle.setAttribute("aria-pressed", String(showAll));
    toggle.textContent = showAll ? "Show unresolved only" : "Show resolved too";
    load();
  } } }, "Show resolved too");
  clear(box, el("div", { class: "alerts-head" }, el("h2", { id: "alerts-title" }, "Alerts"), toggle), note, list);

  const act = (alert, action, button) => transition(alert, action, button, note, load);
  const item = (a) => alertItem(a, act);

  async function load() {
    try {
      const data = await call(`/patients/${encodeURIComponent(id)}/alerts`,
                              { query: showAll ? { status: "all", limit: 100 } : {} });
      if (destroyed) return;
      let alerts = listOf(data);
      if (!showAll) alerts = alerts.filter((a) => a.status !== "resolved");
      clear(list, alerts.map(item));
      if (!alerts.length) list.append(el("li", { class: "muted" }, showAll ? "No alerts." : "No unresolved alerts."));
    } catch (error) {
      if (!destroyed) clear(list, el("li", { class: "error" }, error.status === 404 ? "Alerts are not available." : errorText(error)));
    }
  }

  const reload = throttle(load, 500);
  const unsubscribe = subscribe((event) => {
    if (event.type === "lagged") { reload(); return; }
    if (event.type !== "alert" || (event.patient_id && event.patient_id !== id)) return;
    reload();
  });

  return { ready: load(), destroy() { destroyed = true; unsubscribe(); } };
}
