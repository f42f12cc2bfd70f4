// Panels of the patient page drawn from the record's observations (GET /patients/{id}/observations by LOINC
// code): the INR trend with its therapeutic range and the anticoagulant's doses, eGFR and creatinine. What a
// panel draws comes from the API's panel (series, target, doses); nothing here knows a rule. The caption's
// "latest" is the record summary's latest value of the code (the Record tab's card shows the same one).
// A panel with quantities (panel.charts, twin/panel_charts.py: the kidney panel's eGFR, creatinine, potassium) draws one
// chart per quantity, every code in the one unit the server chose (the newest reading's) and converted (the
// factor is the domain's, vocab/renal.py; never re-typed here); each point's original value, unit and code are
// in the cursor's readout. A calculated series (eGFR by CKD-EPI 2021 where no eGFR was reported that day) is a
// second, dashed series with diamond markers, labelled "calculated (...)" with the method's source; a reading
// for which the record cannot support a value shows the server's reason ("not callable: ..."), never a number.
import { call } from "./api.js";
import { el, isoDay } from "./dom.js";
import { Chart, formatTime } from "./chart.js";
import { shortName, unitText, valueText } from "./vocab.js";

const COLORS = ["#0b5cad", "#b26a00", "#2e7d32"];
const CALCULATED = "#6a1b9a";
const DAY = 86_400_000;

/** A point as the readout says it: the value in the chart's unit, then what was recorded (value, unit, code) or
 *  what it was calculated from. */
function pointText(chart, s, p) {
  const shown = `${valueText(p.value)} ${unitText(chart.unit)}`.trim();
  if (p.kind === "calculated") return `${s.label} ${shown} ${p.basis || ""}`.trim();
  const recorded = p.original_unit !== chart.unit ? `recorded ${valueText(p.original_value)} ${unitText(p.original_unit)}, ` : "";
  return `${chart.label} ${s.name === "reported" && chart.series.length > 1 ? "reported " : ""}${shown} (${recorded}LOINC ${p.code})`;
}

/** What the tile and the caption call the kind of a point: "reported" or the calculation's label. */
export function kindText(chart, p) {
  if (!p) return "";
  const s = chart.series.find((x) => x.kind === p.kind);
  return p.kind === "calculated" && s ? s.label.replace(/^[^,]*,\s*/, "") : "reported";
}

function quantityFigure(panel, c) {
  const calc = c.series.filter((s) => s.kind === "calculated");
  const newestBad = c.not_callable.length ? c.not_callable[c.not_callable.length - 1] : null;
  const notes = [
    calc.length ? el("p", { class: "calc-note", title: calc.map((s) => s.source).join("; ") },
      `Dashed line, \u25c6: ${calc.map((s) => s.label).join(", ")} from creatinine on days without a reported ${c.label}; not a measurement.`) : null,
    newestBad && (!c.latest || Date.parse(newestBad.time) >= Date.parse(c.latest.time))
      ? el("p", { class: "not-callable" }, `Not callable for the latest creatinine (${newestBad.creatinine}, ${formatTime(Date.parse(newestBad.time), true)}): ${newestBad.reason}`) : null,
    c.not_drawn.length ? el("p", { class: "not-drawn" }, `Not drawn: ${c.not_drawn.map((r) => `${r.value} ${r.unit || "(no unit)"} (LOINC ${r.code}): ${r.reason}`).join("; ")}`) : null,
  ];
  const unit = unitText(c.unit);
  return el("figure", { class: "chart-card quantity", id: `chart-${panel.key}-${c.key}`, dataset: { unit: c.unit, unitBasis: c.unit_basis } },
    el("figcaption", el("h3", `${c.label}${unit ? ` (${unit})` : ""}`)),
    c.latest ? el("div", { class: "chart-host" }) : null, ...notes.filter(Boolean));  // notes under: charts align
}

/** One chart of a quantity (panel.charts): reported points solid, calculated ones dashed with diamonds. */
function quantityChart(hostNode, c) {
  const reference = c.reference || [];
  const drawn = c.series.filter((s) => s.points.length);
  const chart = new Chart(hostNode, {
    label: `${c.label} history`, name: c.label, unit: unitText(c.unit), height: 170, everyPoint: true, minSpan: 60 * DAY,
    yFormat: (y) => valueText(y), xFormat: (x) => formatTime(x, true),
    yMin: c.axis ? Math.min(...c.axis) : undefined, yMax: c.axis ? Math.max(...c.axis) : undefined,
    rules: reference.map((r) => ({ y: r.value, color: "#9aa5b1", dash: [2, 4], label: r.label })),
    latest: () => (c.latest ? { x: Date.parse(c.latest.time), y: c.latest.value, note: c.calculated_by.length ? kindText(c, c.latest) : "" } : null),
    empty: "No values recorded" });
  chart.setSeries(drawn.map((s, k) => {
    const calculated = s.kind === "calculated";
    return { id: s.name, label: calculated ? s.label : drawn.length > 1 ? `${c.label}, reported` : c.label,
      type: "line", x: s.points.map((p) => Date.parse(p.time)), y: s.points.map((p) => p.value),
      color: calculated ? CALCULATED : COLORS[k % COLORS.length], dots: calculated ? 3.5 : 3, primary: k === 0,
      dash: calculated ? [5, 3] : undefined, shape: calculated ? "diamond" : undefined,
      describe: (i) => pointText(c, s, s.points[i]) };
  }));
  return chart;
}

function latestOf(ctx, code) {
  const m = [...(ctx.summary.summary.labs || []), ...(ctx.summary.summary.vitals || [])].find((x) => x.code === code);
  return m && m.value !== null && m.value !== undefined && m.time ? { x: Date.parse(m.time), y: m.value, unit: m.unit } : null;
}

function dosesNode(panel) {
  return panel.doses && panel.doses.length ? el("section", { class: "doses" }, el("h3", "Doses"),
    el("ul", panel.doses.map((d) => el("li", el("strong", d.medication), d.dosage ? ` — ${d.dosage}` : "",
      d.authored_on ? el("span", { class: "when" }, ` prescribed ${isoDay(d.authored_on)}`) : "")))) : null;
}

export function mountRecordPanel(host, ctx, panel) {
  if (panel.charts && panel.charts.length) return mountQuantities(host, panel);
  const charts = [];
  const series = panel.series.filter((s) => s.source === "record" && s.has_data);
  const doses = dosesNode(panel);
  const figs = series.map((s) => el("figure", { class: "chart-card", id: `chart-${panel.key}-${s.name}` },
    el("figcaption", el("h3", `${s.label}${panel.target && s === series[0] ? ` · ${panel.target_label}` : ""}`)), el("div", { class: "chart-host" })));
  host.append(...[el("div", { class: "chart-pair" }, figs), doses].filter(Boolean));  // no "null" text

  async function load() {
    await Promise.all(series.map(async (s, k) => {
      const page = await call(`/patients/${encodeURIComponent(ctx.id)}/observations`, { query: { code: s.name, limit: 1000 } });
      const points = page.items.filter((o) => o.effective && o.value !== null).sort((a, b) => Date.parse(a.effective) - Date.parse(b.effective));
      const latest = latestOf(ctx, s.name);
      const unit = unitText((latest && latest.unit) || (points[0] && points[0].unit) || "");
      const target = panel.target && k === 0 ? panel.target : null;
      const chart = new Chart(figs[k].querySelector(".chart-host"), {
        label: `${shortName(s.name, s.label)} history`, unit, height: 150, digits: 1, yFormat: (y) => valueText(y),
        zones: target ? [{ from: target[0], to: target[1], fill: "#e5f3e8" }] : [],
        rules: target ? [{ y: target[0], color: "#2e7d32" }, { y: target[1], color: "#2e7d32" }] : [],
        yMin: target ? target[0] - 1 : undefined, yMax: target ? target[1] + 1 : undefined,
        latest: () => latest, empty: "No values recorded" });
      chart.setSeries([{ id: s.name, label: s.label, type: "line", x: points.map((o) => Date.parse(o.effective)),
                         y: points.map((o) => o.value), color: COLORS[k % COLORS.length], dots: 3, primary: true }]);
      charts.push(chart);
    }));
  }
  return { load, destroy() { for (const c of charts) c.destroy(); } };
}

/** A panel drawn from its quantity charts (the server's: one per quantity, every code, one unit). */
function mountQuantities(host, panel) {
  const charts = [];
  const figs = panel.charts.map((c) => quantityFigure(panel, c));
  host.append(...[el("div", { class: "chart-pair" }, figs), dosesNode(panel)].filter(Boolean));
  async function load() {
    panel.charts.forEach((c, k) => {
      const hostNode = figs[k].querySelector(".chart-host");
      if (hostNode) charts.push(quantityChart(hostNode, c));
    });
  }
  return { load, destroy() { for (const c of charts) c.destroy(); } };
}
