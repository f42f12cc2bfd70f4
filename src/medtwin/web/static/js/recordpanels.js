// Panels of the patient page drawn from the record's observations (GET /patients/{id}/observations by LOINC
// code): the INR trend with its therapeutic range and the anticoagulant's doses, eGFR and creatinine. What a
// panel draws comes from the API's panel (series, target, doses); nothing here knows a rule. The caption's
// "latest" is the record summary's latest value of the code (the Record tab's card shows the same one).
// A panel's calculated series (panel.derived: eGFR from creatinine by CKD-EPI 2021, vocab/renal.py) are drawn
// under their own label, which says "calculated (...)", with the method's source; a reading for which the
// record cannot support a value shows the server's reason ("not callable: ..."), never a number.
import { call } from "./api.js";
import { dateTime, el, isoDay } from "./dom.js";
import { Chart } from "./chart.js";
import { shortName, unitText, valueText } from "./vocab.js";

const COLORS = ["#0b5cad", "#b26a00", "#2e7d32"];

function latestOf(ctx, code) {
  const m = [...(ctx.summary.summary.labs || []), ...(ctx.summary.summary.vitals || [])].find((x) => x.code === code);
  return m && m.value !== null && m.value !== undefined && m.time ? { x: Date.parse(m.time), y: m.value, unit: m.unit } : null;
}

export function mountRecordPanel(host, ctx, panel) {
  const charts = [];
  const series = panel.series.filter((s) => s.source === "record" && s.has_data);
  const doses = panel.doses && panel.doses.length ? el("section", { class: "doses" }, el("h3", "Doses"),
    el("ul", panel.doses.map((d) => el("li", el("strong", d.medication), d.dosage ? ` — ${d.dosage}` : "",
      d.authored_on ? el("span", { class: "when" }, ` prescribed ${isoDay(d.authored_on)}`) : "")))) : null;
  const figs = series.map((s) => el("figure", { class: "chart-card", id: `chart-${panel.key}-${s.name}` },
    el("figcaption", el("h3", `${s.label}${panel.target && s === series[0] ? ` · ${panel.target_label}` : ""}`)), el("div", { class: "chart-host" })));
  const derived = panel.derived || [];
  const dfigs = derived.map((d) => {
    const last = d.calls.length ? d.calls[d.calls.length - 1] : null;
    const note = last && last.not_callable
      ? el("p", { class: "not-callable" }, `Not callable for the latest creatinine (${last.creatinine}, ${dateTime(last.time)}): ${last.not_callable}`)
      : null;
    return el("figure", { class: "chart-card derived", id: `chart-${panel.key}-${d.name}`, dataset: { method: d.method } },
      el("figcaption", el("h3", d.label),
        el("p", { class: "calc-note", title: d.source }, `Calculated from creatinine by ${d.method}; not a measurement.`), note),
      d.calls.some((c) => c.egfr_ml_min_1_73m2 !== null) ? el("div", { class: "chart-host" }) : null);
  });
  host.append(...[el("div", { class: "chart-pair" }, figs, dfigs), doses].filter(Boolean));  // no "null" text

  function drawDerived() {
    derived.forEach((d, k) => {
      const hostNode = dfigs[k].querySelector(".chart-host");
      if (!hostNode) return;
      const points = d.calls.filter((c) => c.egfr_ml_min_1_73m2 !== null);
      const newest = points[points.length - 1];
      const latest = { x: Date.parse(newest.time), y: newest.egfr_ml_min_1_73m2 };
      const chart = new Chart(hostNode, { label: d.label, unit: unitText(d.unit), height: 150, digits: 0,
        yFormat: (y) => valueText(y), latest: () => latest, empty: "No creatinine to calculate from" });
      chart.setSeries([{ id: d.name, label: d.label, type: "line", x: points.map((c) => Date.parse(c.time)),
                         y: points.map((c) => c.egfr_ml_min_1_73m2), color: "#6a1b9a", dots: 3, primary: true, dash: [5, 3] }]);
      charts.push(chart);
    });
  }

  async function load() {
    drawDerived();
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
