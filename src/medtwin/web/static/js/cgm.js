// CGM report tab: consensus metrics with their targets and the ambulatory glucose profile, from
// GET /patients/{id}/cgm-report, by time of day in the patient's zone (the record's, else the server's
// configured zone: the server decides and says which; never the browser's).
import { call, errorText } from "./api.js";
import { clear, day, el, num } from "./dom.js";
import { Chart } from "./chart.js";
import { displayUnit, glucoseLevels, glucoseZones } from "./vocab.js";

const pad2 = (n) => String(n).padStart(2, "0");

/** The five ranges of the time-in-ranges bar, labelled with the vocabulary's thresholds (mg/dL). */
function ranges() {
  const t = glucoseLevels();
  const label = (words, bounds) => (t ? `${words} ${bounds(t)}` : words);
  return [
    ["time_above_250_percent", label("Very high", (x) => `> ${x.vhigh}`), "rng-vhigh"],
    ["time_above_180_percent", label("High", (x) => `${x.high + 1}–${x.vhigh}`), "rng-high"],
    ["time_in_range_70_180_percent", label("In range", (x) => `${x.low}–${x.high}`), "rng-in"],
    ["time_below_70_percent", label("Low", (x) => `${x.vlow}–${x.low - 1}`), "rng-low"],
    ["time_below_54_percent", label("Very low", (x) => `< ${x.vlow}`), "rng-vlow"],
  ];
}

export async function mountCgm(panel, ctx) {
  const days = el("select", { id: "cgm-days" }, [7, 14, 30, 90].map((d) => el("option", { value: String(d), selected: d === 14 }, `${d} days`)));
  const body = el("div", { id: "cgm-body" });
  clear(panel, el("div", { class: "panel-head" }, el("h2", "CGM report"), el("label", { for: "cgm-days" }, "Period "), days), body);
  let chart = null;

  async function load() {
    clear(body, el("p", { class: "muted" }, "Loading…"));
    let r;
    try {
      r = await call(`/patients/${encodeURIComponent(ctx.id)}/cgm-report`, { query: { days: days.value } });
    } catch (error) {
      clear(body, el("p", { class: error.status === 404 ? "muted" : "error" }, error.status === 404 ? "The CGM report is not available." : errorText(error)));
      return;
    }
    if (chart) chart.destroy();
    chart = null;
    const c = r.coverage;
    if (!r.metrics) { clear(body, el("p", { class: "muted" }, "No CGM readings for this patient.")); return; }
    const m = r.metrics;
    // time in ranges: "Low 54-69" is below 70 minus below 54; "High 181-250" above 180 minus above 250
    const share = { ...m, time_below_70_percent: m.time_below_70_percent - m.time_below_54_percent,
                    time_above_180_percent: m.time_above_180_percent - m.time_above_250_percent };
    const RANGES = ranges();
    const t = glucoseLevels();
    const mgdl = displayUnit("glucose");
    const bar = el("div", { class: "tir-bar", role: "img", "aria-label": RANGES.map(([k, label]) => `${label}: ${num(share[k], 1)} %`).join(", ") });
    const legend = el("ul", { class: "tir-legend" });
    for (const [key, label, cls] of RANGES) {
      const seg = el("div", { class: `seg ${cls}` });
      seg.style.flexBasis = `${Math.max(0, share[key])}%`;
      bar.append(seg);
      legend.append(el("li", el("span", { class: `swatch ${cls}` }), `${label}: `, el("strong", `${num(share[key], 1)} %`)));
    }
    const met = r.targets_met || {};
    const targetRows = (r.targets || []).map((t) => {
      const ok = met[t.metric] ?? met[t.label];
      return el("tr", el("th", { scope: "row" }, t.label), el("td", { class: "num" }, `${num(m[t.metric], 1)} %`),
        el("td", { class: ok ? "ok" : "not-ok" }, ok === undefined ? "—" : ok ? "✓ met" : "✗ not met"));
    });
    const facts = el("dl", { class: "facts-grid" },
      el("dt", "Period"), el("dd", c.start ? `${day(c.start)} – ${day(c.end)} (${c.days} days)` : "—"),
      el("dt", "CGM active"), el("dd", `${num(c.percent_time_active, 1)} %`, c.sufficient ? "" : el("span", { class: "warn-text" }, " — below 70 %: interpret with care")),
      el("dt", "Readings"), el("dd", `${c.n_readings}${c.sample_period_min ? `, every ${c.sample_period_min} min` : ""}`),
      el("dt", "Mean glucose"), el("dd", `${num(m.mean_mg_dl)} ${mgdl}`),
      el("dt", "GMI"), el("dd", `${num(m.gmi_percent, 1)} %`),
      el("dt", "Variability (CV)"), el("dd", `${num(m.cv_percent, 1)} %`),
      el("dt", t ? `Hypo episodes < ${t.low} / < ${t.vlow}` : "Hypo episodes level 1 / level 2"), el("dd", `${m.hypo_episodes_below_70} / ${m.hypo_episodes_below_54}`));
    const agpHost = el("div");
    clear(body,
      el("div", { class: "cgm-grid" },
        el("section", { class: "card" }, el("h3", "Time in ranges"), bar, legend),
        el("section", { class: "card" }, el("h3", "Glucose statistics"), facts),
        el("section", { class: "card" }, el("h3", "Consensus targets (Battelino 2019)"),
          el("table", { class: "targets" }, el("thead", el("tr", el("th", { scope: "col" }, "Target"), el("th", { scope: "col" }, "Value"), el("th", { scope: "col" }, "Met"))),
            el("tbody", targetRows)))),
      el("figure", { class: "chart-card", id: "agp" }, el("figcaption", el("h3", `Ambulatory glucose profile (time of day in ${r.time_zone}${
        r.time_zone_source === "server" ? ": the server's zone, the record states none" : r.time_zone_source === "record" ? ": the patient's zone" : ""})`)), agpHost));
    if (r.agp) {
      const a = r.agp;
      chart = new Chart(agpHost, {
        label: "Ambulatory glucose profile", unit: mgdl, x: "number", height: 260, yMin: 40, yMax: 300, ...glucoseZones(),
        xTicks: (x0, x1) => { const t = []; for (let v = 0; v <= 1440; v += 180) if (v >= x0 && v <= x1) t.push(v); return t; },
        xTickFormat: (v) => `${pad2(Math.floor(v / 60) % 24)}:00`,
        xFormat: (v) => `${pad2(Math.floor(v / 60))}:${pad2(Math.round(v % 60))}`,
      });
      chart.setRange([0, 1440]);
      chart.setSeries([
        { id: "p5", label: "5–95th percentile", type: "band", x: a.minute_of_day, y: a.p5, y2: a.p95, color: "#0b5cad", fill: "rgba(11, 92, 173, 0.14)" },
        { id: "p25", label: "25–75th percentile", type: "band", x: a.minute_of_day, y: a.p25, y2: a.p75, color: "#0b5cad", fill: "rgba(11, 92, 173, 0.32)" },
        { id: "p50", label: "Median", type: "line", x: a.minute_of_day, y: a.p50, color: "#0b3c73", width: 2.2, primary: true,
          describe: (i) => `median ${num(a.p50[i])} mg/dL, 25–75th ${num(a.p25[i])}–${num(a.p75[i])}, 5–95th ${num(a.p5[i])}–${num(a.p95[i])}` },
      ]);
    }
  }
  days.addEventListener("change", load);
  await load();
  return { destroy() { if (chart) chart.destroy(); } };
}
