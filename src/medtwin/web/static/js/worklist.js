// Alerts across the caller's patients: the worklist view (#/alerts, GET /alerts most urgent first; by default
// every unresolved alert, including serious ones whose condition cleared and await a person; a "Resolved"
// filter for the closed ones), the open-alert count in the header, and the announcement of every new,
// escalated or recurring alert in the assertive live region, whatever screen is showing.
import { call, errorText } from "./api.js";
import { $, announce, clear, el, throttle } from "./dom.js";
import { subscribe } from "./events.js";
import { alertItem, listOf, transition } from "./alerts.js";

const names = new Map();  // patient id -> name, for messages and links
let active = false;
let unsubscribeView = null;
let unsubscribeWatch = null;

async function nameOf(id) {
  if (!names.has(id)) {
    const page = await call("/dashboard/patients", { query: { q: id, limit: 1 } }).catch(() => null);
    const row = page && page.items.find((p) => p.id === id);
    names.set(id, row ? row.name || id : id);
  }
  return names.get(id);
}

export function rememberNames(items) { for (const p of items) names.set(p.id, p.name || p.id); }

const refreshCount = throttle(async () => {
  try {
    const page = await call("/alerts", { query: { status: "open", limit: 1 } });
    const badge = $("alert-count");
    badge.textContent = String(page.total);
    badge.hidden = page.total === 0;
    $("nav-alerts").setAttribute("aria-label", `Alerts, ${page.total} open`);
  } catch { /* a role without alerts: no count */ }
}, 2000);

/** Announce new and escalated alerts and keep the header count; returns the stop function. */
export function watchAlerts() {
  if (unsubscribeWatch) return unsubscribeWatch;
  refreshCount();
  unsubscribeWatch = subscribe(async (event) => {
    if (event.type === "lagged") { refreshCount(); return; }
    if (event.type !== "alert" || !event.data || !event.data.alert) return;
    refreshCount();
    const { action, alert } = event.data;
    const verb = { opened: "New", escalated: "Escalated", recurred: "Recurring" }[action];
    if (!verb) return;
    const who = await nameOf(alert.patient_id);
    announce(`${verb} ${alert.severity} alert for ${who}: ${alert.message}`, { severity: alert.severity });
  });
  const stop = unsubscribeWatch;
  return () => { stop(); unsubscribeWatch = null; };
}

export async function showWorklist() {
  const view = $("alerts-view");
  const status = el("select", { id: "worklist-status" },
    [["unresolved", "Unresolved"], ["open", "Open (not acknowledged)"], ["acknowledged", "Acknowledged"],
     ["resolved", "Resolved"], ["all", "All"]]
      .map(([v, l]) => el("option", { value: v }, l)));
  const list = el("ul", { class: "alert-list worklist", id: "worklist" });
  const note = el("p", { class: "muted", role: "status" });
  clear(view, el("div", { class: "panel-head" }, el("h1", { id: "alerts-view-title" }, "Alerts"),
    el("label", { for: "worklist-status" }, "Show "), status), note, list);

  async function load() {
    try {
      const page = await call("/alerts", { query: { status: status.value, limit: 200 } });
      const alerts = listOf(page);
      const who = await Promise.all(alerts.map((a) => nameOf(a.patient_id)));
      if (!active) return;
      clear(list, alerts.map((a, i) => alertItem(a, (x, action, button) => transition(x, action, button, note, load), who[i])));
      if (!alerts.length) list.append(el("li", { class: "muted" }, "No alerts to show."));
      note.textContent = `${page.total} alert${page.total === 1 ? "" : "s"}, most urgent first.`;
    } catch (error) {
      clear(list, el("li", { class: "error" }, errorText(error)));
    }
  }
  status.addEventListener("change", load);
  active = true;
  if (unsubscribeView) unsubscribeView();
  const reload = throttle(load, 1000);
  unsubscribeView = subscribe((event) => { if (event.type === "alert" || event.type === "lagged") reload(); });
  await load();
}

export function hideWorklist() {
  active = false;
  if (unsubscribeView) unsubscribeView();
  unsubscribeView = null;
}
