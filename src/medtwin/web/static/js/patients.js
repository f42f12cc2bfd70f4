// The patient list: GET /dashboard/patients (the server orders by urgency and supplies each twin's latest
// state); the column buttons re-sort what was fetched. The list refreshes on live events (at most every few
// seconds) and every 30 s.
import { call, errorText } from "./api.js";
import { $, ago, debounce, el, news2Badge, num, severityBadge, throttle, trendNode } from "./dom.js";
import { subscribe } from "./events.js";
import { rememberNames } from "./worklist.js";
import { alertLabel, displayUnit, glucoseClass } from "./vocab.js";

const SEVERITIES = ["critical", "high", "medium", "low"];
const SEV_RANK = { critical: 4, high: 3, medium: 2, low: 1 };
let items = [];
let sort = { key: "urgency", dir: 1 };
let active = false;
let timer = null;
let unsubscribe = null;
let loading = null;

const KEYS = {
  urgency: (p) => p.urgency_rank,
  name: (p) => (p.name || p.id).toLowerCase(),
  age: (p) => p.age_years ?? -1,
  glucose: (p) => (p.glucose ? p.glucose.value : -1),
  news2: (p) => (p.news2 ? p.news2.score : -1),
  hr: (p) => (p.heart_rate ? p.heart_rate.value : -1),
  alerts: (p) => (SEV_RANK[p.alerts.top_severity] || 0) * 1000 + p.alerts.open + p.alerts.acknowledged,
};

function sorted() {
  const key = KEYS[sort.key];
  return [...items].sort((a, b) => {
    const ka = key(a), kb = key(b);
    return (ka < kb ? -1 : ka > kb ? 1 : a.urgency_rank - b.urgency_rank) * sort.dir;
  });
}

function glucoseCell(p) {
  if (!p.glucose) return el("td", { class: "muted" }, "—");
  const g = p.glucose;
  const cls = glucoseClass(g.value);
  const low = cls === "crit" || cls === "low", high = cls === "warn" || cls === "high";
  return el("td", { class: `num glucose ${low ? "is-low" : high ? "is-high" : ""}` },
    el("strong", num(g.value)), " ", trendNode(g.trend, g.trend_mg_dl_per_min),
    el("span", { class: `when ${g.stale ? "stale" : ""}`, title: new Date(g.time).toString() },
       g.stale ? ` ${ago(g.time)} (no recent reading)` : ` ${ago(g.time)}`));
}

function alertsCell(p) {
  const cell = el("td", { class: "alerts-cell" });
  if (p.predicted_hypo) cell.append(el("span", { class: "badge sev-high" }, alertLabel("predicted-hypo")), " ");
  for (const severity of SEVERITIES) {
    const n = p.alerts.by_severity[severity];
    if (n) cell.append(severityBadge(severity, n), " ");
  }
  if (!cell.childNodes.length) cell.append(el("span", { class: "muted" }, "none"));
  else if (p.alerts.top_message) cell.append(el("span", { class: "alert-msg" }, p.alerts.top_message));
  return cell;
}

function row(p) {
  const link = el("a", { href: `#/patients/${encodeURIComponent(p.id)}` }, p.name || p.id);
  const tr = el("tr", { dataset: { id: p.id }, class: p.urgency_rank <= 3 && p.reasons.length ? "urgent" : "" },
    el("td", { class: "num" }, String(p.urgency_rank),
       p.reasons.length ? el("span", { class: "visually-hidden" }, `: ${p.reasons.join("; ")}`) : null),
    el("th", { scope: "row" }, link, el("div", { class: "sub" }, p.reasons.join(" · "))),
    el("td", { class: "num" }, p.age_years ?? "—", el("span", { class: "sub" }, p.gender ? ` ${p.gender[0].toUpperCase()}` : "")),
    glucoseCell(p),
    el("td", { class: "num" }, news2Badge(p.news2)),
    el("td", { class: "num" }, p.heart_rate ? el("span", {}, num(p.heart_rate.value), el("span", { class: "unit" }, ` ${displayUnit("heart_rate")}`)) : "—"),
    alertsCell(p),
    el("td", { class: "problems" }, p.problems.join(", ") || "—",
       p.n_problems > p.problems.length ? el("span", { class: "muted" }, ` +${p.n_problems - p.problems.length}`) : null),
  );
  tr.addEventListener("click", (event) => { if (event.target.tagName !== "A") location.hash = link.getAttribute("href"); });
  return tr;
}

function render() {
  const body = $("patients").querySelector("tbody");
  const rows = sorted().map(row);
  body.replaceChildren(...rows);
  if (!rows.length) body.append(el("tr", el("td", { colspan: 8, class: "muted" }, "No patients match.")));
  for (const th of $("patients").querySelectorAll("th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === sort.key ? (sort.dir > 0 ? "ascending" : "descending") : "none");
  }
}

export async function loadPatients() {
  if (loading) return loading;
  const q = $("search").value.trim();
  loading = (async () => {
    try {
      const page = await call("/dashboard/patients", { query: { q, limit: 500 } });
      items = page.items;
      rememberNames(items);
      $("list-error").textContent = "";
      $("list-count").textContent = `${page.total} patient${page.total === 1 ? "" : "s"}${q ? ` matching “${q}”` : ""} · updated ${new Date(page.generated_at).toLocaleTimeString()}`;
      render();
    } catch (error) {
      $("list-error").textContent = error.status === 403
        ? "This account's role has no access to patient records (researchers use the de-identified research export)."
        : errorText(error);
    } finally {
      loading = null;
    }
  })();
  return loading;
}

const refreshSoon = throttle(() => { if (active) loadPatients(); }, 3000);

for (const th of $("patients").querySelectorAll("th[data-sort] button")) {
  th.addEventListener("click", () => {
    const key = th.parentElement.dataset.sort;
    sort = { key, dir: sort.key === key ? -sort.dir : key === "urgency" || key === "name" ? 1 : -1 };
    render();
  });
}
$("search").addEventListener("input", debounce(() => loadPatients(), 250));

export async function showPatients() {
  if (!active) {
    active = true;
    // alerts and new samples change the list's order and readings; refresh at most every ~2 s
    unsubscribe = subscribe((event) => { if (["alert", "samples", "forecast", "lagged"].includes(event.type)) refreshSoon(); });
    timer = setInterval(() => loadPatients(), 30_000);
  }
  await loadPatients();
}

export function hidePatients() {
  active = false;
  clearInterval(timer);
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}
