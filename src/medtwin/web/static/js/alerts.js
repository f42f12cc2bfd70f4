// The alerts panel of a patient: unresolved alerts first (most severe first, as the API orders them),
// acknowledge / resolve buttons, and a live announcement when a new alert arrives on the event stream.
import { call, errorText } from "./api.js";
import { announce, ago, clear, el, severityBadge, throttle } from "./dom.js";
import { subscribe } from "./events.js";

const RULES = {
  "predicted-hypo": "Predicted hypoglycaemia", "hypo-l1": "Hypoglycaemia level 1", "hypo-l2": "Hypoglycaemia level 2",
  "hyper-l1": "Hyperglycaemia level 1", "hyper-l2": "Hyperglycaemia level 2", news2: "NEWS2",
  "hr-deviation": "Heart rate deviation",
};

function listOf(data) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data.items)) return data.items;
  if (data && Array.isArray(data.alerts)) return data.alerts;
  return [];
}

export function mountAlerts(box, ctx) {
  const id = ctx.id;
  let showAll = false;
  let destroyed = false;
  let known = null;  // ids seen, to announce only new alerts
  const list = el("ul", { class: "alert-list", id: "alert-list" });
  const note = el("p", { class: "muted", role: "status" });
  const toggle = el("button", { type: "button", class: "link", "aria-pressed": "false", on: { click: () => {
    showAll = !showAll;
    toggle.setAttribute("aria-pressed", String(showAll));
    toggle.textContent = showAll ? "Show unresolved only" : "Show resolved too";
    load();
  } } }, "Show resolved too");
  clear(box, el("div", { class: "alerts-head" }, el("h2", { id: "alerts-title" }, "Alerts"), toggle), note, list);

  async function act(alert, action, button) {
    button.disabled = true;
    try {
      await call(`/alerts/${encodeURIComponent(alert.id)}/${action}`, { method: "POST" });
      announce(`Alert ${action === "acknowledge" ? "acknowledged" : "resolved"}: ${alert.message}`, { toast: false });
      note.textContent = `${action === "acknowledge" ? "Acknowledged" : "Resolved"}: ${alert.message}`;
      await load();
    } catch (error) {
      note.textContent = errorText(error);
      button.disabled = false;
    }
  }

  function item(a) {
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
    return el("li", { class: `alert-item status-${a.status} sev-border-${a.severity}`, dataset: { id: a.id, status: a.status } },
      el("div", { class: "alert-top" }, severityBadge(a.severity), " ",
         el("strong", RULES[a.rule] || a.rule), el("span", { class: "alert-status" }, a.status)),
      el("p", { class: "alert-msg" }, a.message),
      el("p", { class: "sub" }, `since ${ago(a.opened_at)}`, a.occurrences > 1 ? ` · ${a.occurrences}×` : "",
         ` · last ${ago(a.last_seen_at)}`, who),
      actions);
  }

  async function load() {
    try {
      const data = await call(`/patients/${encodeURIComponent(id)}/alerts`,
                              { query: showAll ? { status: "all", limit: 100 } : {} });
      if (destroyed) return;
      let alerts = listOf(data);
      if (!showAll) alerts = alerts.filter((a) => a.status !== "resolved");
      const fresh = known ? alerts.filter((a) => !known.has(a.id) && a.status === "open") : [];
      known = new Set([...(known || []), ...alerts.map((a) => a.id)]);
      for (const a of fresh) announce(`New ${a.severity} alert for ${ctx.summary.summary.name || "this patient"}: ${a.message}`,
                                      { severity: a.severity });
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
