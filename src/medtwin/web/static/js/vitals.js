// The vital-signs panel of the patient page (NEWS2 flowsheet): every NEWS2 parameter as a row of the last
// observation sets with the score under them, the score's trend (GET /dashboard/patients/{id}/news2-trend),
// and a chart per measured parameter (respiration rate, SpO2, blood pressure, heart rate, temperature).
// The series and the latest values are the live tab's (live.js): one source for tiles, charts and captions.
import { call } from "./api.js";
import { clock, el, num } from "./dom.js";
import { Chart, upperBound } from "./chart.js";
import { displayUnit, metricLabel, news2Band } from "./vocab.js";

const MINUTE = 60_000, HOUR = 60 * MINUTE;
const COLORS = { respiratory_rate: "#6a3d9a", spo2: "#00695c", systolic_bp: "#0b5cad", diastolic_bp: "#2e7d32",
                 heart_rate: "#b3261e", body_temperature: "#b26a00", news2: "#1d2430" };
// flowsheet rows: [metric, label, digits, text(value)]
const ACVPU = ["A", "C", "V", "P", "U"];
const ROWS = [["respiratory_rate", "Respiration rate", 0], ["spo2", "SpO₂", 0],
  ["supplemental_oxygen", "Air or oxygen", 0, (v) => (v >= 0.5 ? "O₂" : "Air")], ["systolic_bp", "Systolic BP", 0],
  ["heart_rate", "Pulse", 0], ["consciousness", "Consciousness", 0, (v) => ACVPU[Math.round(v)] ?? String(v)],
  ["body_temperature", "Temperature", 1]];
const CHARTS = [["rr", "respiratory_rate", [8, 25]], ["spo2", "spo2", [88, 100]], ["bp", "systolic_bp", [60, 150]],
  ["hr", "heart_rate", [50, 110]], ["temp", "body_temperature", [35.5, 38.5]]];
const COLUMNS = 6;
const WINDOW = 60 * MINUTE;  // a value older than the chart's window is not part of a set (alerts/news2.py)

/** Columns of the flowsheet: the newest scored sets, at least 30 min apart, oldest first. */
function columns(trend) {
  const out = [];
  for (let i = trend.times.length - 1; i >= 0 && out.length < COLUMNS; i--) {
    const t = Date.parse(trend.times[i]);
    if (!out.length || out[out.length - 1].t - t >= 30 * MINUTE) out.push({ t, score: trend.scores[i], risk: trend.risks[i], complete: trend.complete[i] });
  }
  return out.reverse();
}

function valueAt(series, t) {
  if (!series || !series.x.length) return null;
  const i = upperBound(series.x, t) - 1;
  return i >= 0 && t - series.x[i] <= WINDOW ? series.y[i] : null;
}

export function mountVitals(host, ctx, live) {
  const { state, latestPoint, gap } = live;
  const base = `/dashboard/patients/${encodeURIComponent(ctx.id)}`;
  let trend = { times: [], scores: [], risks: [], complete: [] };
  const table = el("table", { class: "flowsheet", id: "flowsheet" });
  const tableBox = el("div", { class: "table-wrap" }, table);
  const figure = (key, title) => el("figure", { class: "chart-card", id: `chart-${key}` }, el("figcaption", el("h3", title)), el("div", { class: "chart-host" }));
  const charts = {};
  const figs = {};
  const present = (metric) => state[metric] && state[metric].x.length > 0;
  figs.news2 = figure("news2", "NEWS2 score (each observation set)");
  for (const [key, metric] of CHARTS) {
    if (!present(metric)) continue;
    figs[key] = figure(key, metric === "systolic_bp" ? "Blood pressure" : metricLabel(metric));
  }
  host.append(el("h3", { class: "panel-sub" }, "Flowsheet: the latest observation sets"), tableBox, figs.news2,
              el("div", { class: "chart-pair" }, ...CHARTS.map(([key]) => figs[key]).filter(Boolean)));
  const hostOf = (fig) => fig.querySelector(".chart-host");
  charts.news2 = new Chart(hostOf(figs.news2), { label: "NEWS2", unit: "", height: 130, yMin: 0, yMax: 9,
    zones: [{ from: 5, to: 6.5, fill: "#fdf0dc" }, { from: 7, to: 20, fill: "#fbe3e1" }], empty: "No scored observation sets",
    latest: () => (trend.times.length ? { x: Date.parse(trend.times[trend.times.length - 1]), y: trend.scores[trend.scores.length - 1] } : null) });
  for (const [key, metric, [lo, hi]] of CHARTS) {
    if (!figs[key]) continue;
    charts[key] = new Chart(hostOf(figs[key]), { label: metric === "systolic_bp" ? "Blood pressure" : metricLabel(metric),
      unit: displayUnit(metric), height: 130, yMin: lo, yMax: hi, digits: metric === "body_temperature" ? 1 : 0,
      latest: () => latestPoint(metric) });
  }

  function renderTable() {
    const cols = columns(trend);
    const head = el("tr", el("th", { scope: "col" }, "Parameter"), cols.map((c) => el("th", { scope: "col" }, clock(c.t))));
    const rows = ROWS.map(([metric, label, digits, text]) => el("tr", { dataset: { metric } },
      el("th", { scope: "row" }, label, metric in state && displayUnit(metric) ? el("span", { class: "unit" }, ` ${displayUnit(metric)}`) : null),
      cols.map((c) => { const v = valueAt(state[metric], c.t); return el("td", { class: "num" }, v === null ? "—" : text ? text(v) : num(v, digits)); })));
    const score = el("tr", { class: "score-row" }, el("th", { scope: "row" }, "NEWS2"),
      cols.map((c) => el("td", { class: `num band-${c.risk}`, title: news2Band(c.risk)?.label || c.risk, dataset: { score: String(c.score) } },
        `${c.score}${c.complete ? "" : "*"}`)));
    table.replaceChildren(el("caption", { class: "muted" }, cols.length ? "Values within 60 min before each set; * a parameter was missing (the score is a lower bound)" : "No observation sets yet"),
      el("thead", head), el("tbody", rows, score));
  }

  function draw([x0, x1]) {
    const x = trend.times.map((t) => Date.parse(t));
    charts.news2.setSeries([{ id: "news2", label: "NEWS2", type: "line", x, y: trend.scores, color: COLORS.news2, dots: 2.5, gap: 2 * HOUR, primary: true }]);
    charts.news2.setRange([x0, x1]);
    for (const [key, metric] of CHARTS) {
      const chart = charts[key];
      if (!chart) continue;
      const line = (m, label, extra = {}) => ({ id: m, label, type: "line", x: state[m].x, y: state[m].y, color: COLORS[m], gap: gap(m), ...extra });
      chart.setSeries(metric === "systolic_bp"
        ? [line("systolic_bp", "Systolic", { dots: 2.5, primary: true }), line("diastolic_bp", "Diastolic", { dots: 2.5 })]
        : [line(metric, metricLabel(metric), { primary: true })]);
      chart.setRange([x0, x1]);
    }
    renderTable();
  }

  async function load(hours) {
    trend = await call(`${base}/news2-trend`, { query: { hours: Math.max(1, Math.min(24 * 30, hours)) } }).catch(() => trend);
  }

  return { load, draw, destroy() { for (const c of Object.values(charts)) c.destroy(); } };
}
