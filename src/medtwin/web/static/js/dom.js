// Small DOM and formatting helpers. Data is always written as text (textContent), never as HTML.
import { news2Band } from "./vocab.js";
import { serverNow } from "./clock.js";
export const $ = (id) => document.getElementById(id);

/** el("tr", {class: "x", dataset: {id}, on: {click}}, child, "text", ...) */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else if (key === "text") node.textContent = String(value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

export function clear(node, ...children) { node.replaceChildren(); append(node, children); return node; }

const pad = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

export function toDate(value) { return value instanceof Date ? value : new Date(value); }
export function clock(value) { const d = toDate(value); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; }
export function day(value) { const d = toDate(value); return `${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()}`; }
export function dayShort(value) { const d = toDate(value); return `${d.getDate()} ${MONTHS[d.getMonth()]}`; }
export function dateTime(value) {
  if (!value) return "—";
  const d = toDate(value);
  const today = new Date(serverNow());  // the server's "today" (simulated in a demo)
  return d.toDateString() === today.toDateString() ? clock(d) : `${dayShort(d)} ${clock(d)}`;
}
export function isoDay(value) { return value ? toDate(value).toISOString().slice(0, 10) : ""; }

/** "3 min ago", "2 h ago", "5 d ago" against the server's clock (simulated in a demo; clock.js). */
export function ago(value, now = serverNow()) {
  if (!value) return "";
  const seconds = Math.max(0, (now - toDate(value).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400 * 2) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function num(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return Number(value).toFixed(digits);
}

export function time(value, text) {
  return el("time", { datetime: value ? toDate(value).toISOString() : "", title: value ? toDate(value).toString() : "" },
            text ?? dateTime(value));
}

/** The CGM trend codes of /dashboard/patients as arrows and words. */
export const TRENDS = {
  "rising-fast": ["⇈", "rising fast"], rising: ["↑", "rising"], "rising-slowly": ["↗", "rising slowly"],
  steady: ["→", "steady"], "falling-slowly": ["↘", "falling slowly"], falling: ["↓", "falling"],
  "falling-fast": ["⇊", "falling fast"],
};

export function trendNode(trend, rate) {
  if (!trend || !TRENDS[trend]) return null;
  const [arrow, words] = TRENDS[trend];
  const label = rate === null || rate === undefined ? words : `${words}, ${num(rate, 1)} mg/dL per min`;
  return el("span", { class: `trend trend-${trend}`, title: label },
            el("span", { "aria-hidden": "true" }, arrow), el("span", { class: "visually-hidden" }, ` ${label}`));
}

export function severityBadge(severity, count, extra = "", title = "") {
  const text = count === undefined ? severity : `${count} ${severity}`;
  return el("span", { class: `badge sev-${severity} ${extra}`.trim(), ...(title ? { title } : {}) }, text);
}

/** The label of a NEWS2 band from the one mapping (vocabulary ``news2.risk_bands``: "medium clinical risk"). */
export function news2Label(band) {
  const found = news2Band(band);
  return found ? found.label : band ? `${band} clinical risk` : "";
}

/** A NEWS2 score as a badge coloured by its band (RCP 2017), the band's label in the tooltip. */
export function news2Badge(news2) {
  if (!news2) return el("span", { class: "muted" }, "—");
  const band = news2.band || news2.risk;
  const severity = news2Band(band)?.alert_severity;  // coloured as the alert it raises (one mapping)
  return el("span", { class: `badge news2-${band}${severity ? ` sev-${severity}` : ""}`, title: `NEWS2 ${news2.score ?? news2.aggregate}: ${news2Label(band)}${news2.time ? `, set of ${clock(news2.time)}` : ""}`,
                      dataset: { band } },
            `${news2.score ?? news2.aggregate}`, el("span", { class: "visually-hidden" }, ` (${news2Label(band)})`));
}

let announceTimer;
/** Say something to screen readers (the assertive live region); also shown briefly as a toast. */
export function announce(message, { toast = true, severity = "info" } = {}) {
  const region = $("announcer");
  clearTimeout(announceTimer);
  region.textContent = "";
  // a fresh text node after a tick, so the same message twice is announced twice
  announceTimer = setTimeout(() => { region.textContent = message; }, 50);
  if (toast) {
    const box = el("div", { class: `toast sev-${severity}` }, message);
    $("toasts").append(box);
    setTimeout(() => box.remove(), 6000);
  }
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

/** Call fn at most once per ``ms`` (the last call in a burst is not lost). */
export function throttle(fn, ms) {
  let last = 0, timer = null;
  return (...args) => {
    const wait = last + ms - Date.now();
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(...args); }, Math.max(0, wait));
  };
}
