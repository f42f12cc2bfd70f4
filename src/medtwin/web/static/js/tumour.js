// Tumour tab: the lesion's size readings from the record (table + chart), the growth laws fitted to them
// (POST /patients/{id}/tumour/fit: the chosen law, its AIC beside every law's, stored as a twin version), the
// forecast with its calibrated 80 % band to the next assessment (POST .../tumour/forecast), and a comparison
// of continuing, stopping or switching chemotherapy and of radiotherapy fractionation schemes side by side
// (POST .../tumour/compare: volume, diameter and RECIST category, or cell kill with BED/EQD2, and the answer's
// stated assumptions). The tab is offered only for a patient with tumour-size Observations (patient.js asks
// hasTumourSizes); every number shown is the API's, nothing is fitted here.
import { call, errorText } from "./api.js";
import { clear, day, dayShort, el, num } from "./dom.js";
import { Chart } from "./chart.js";

// The record codes the API reads as one lesion (api/routers/tumour.py TUMOUR_SIZE_CODES) and the size -> volume
// rule of oncology/measurements.py (ELLIPSOID, DIAMETER_MM, VOLUME_MM3), used only to plot the readings on the
// model's volume axis; tests/web/test_tumour_tab.py checks both copies against the Python.
export const TUMOUR_SIZE_CODES = ["21889-1", "33728-7"];
export const ELLIPSOID = 0.52;
const DIAMETER_MM = { mm: 1, cm: 10 };
const VOLUME_MM3 = { mm3: 1, cm3: 1000, ml: 1000 };
const DAY_MS = 86_400_000;
const LEVEL = 0.8;
const CURVE_POINTS = [70, 30];  // up to the last reading, then ahead (the forecast takes at most 100 horizons)
const LAW_NAMES = {
  exponential: "exponential", logistic: "logistic", gompertz: "Gompertz", bertalanffy: "Bertalanffy",
  gen_bertalanffy: "generalised Bertalanffy", exp_linear: "exponential-linear", power_law: "power law",
};
const lawName = (key) => LAW_NAMES[key] || key;
let uid = 0;

/** Volume (mm³) of a reading as the API converts it; null for a unit it would refuse. */
export function volumeMm3(size, unit) {
  const key = String(unit || "").trim().toLowerCase().replace("^", "").replace("³", "3");
  if (key in DIAMETER_MM) return ELLIPSOID * (size * DIAMETER_MM[key]) ** 3;
  if (key in VOLUME_MM3) return size * VOLUME_MM3[key];
  return null;
}

async function sizeReadings(id, limit) {
  const base = `/patients/${encodeURIComponent(id)}/observations`;
  const pages = await Promise.all(TUMOUR_SIZE_CODES.map((code) => call(base, { query: { code, limit } })));
  return pages.flatMap((p) => p.items).filter((o) => o.value !== null && o.effective)
    .sort((a, b) => new Date(a.effective) - new Date(b.effective));
}

/** Whether the record holds tumour-size readings (the tab is shown only then). */
export async function hasTumourSizes(id) {
  try { return (await sizeReadings(id, 1)).length > 0; } catch { return false; }
}

function field(label, input, hint) {
  input.id = input.id || `tu-f${++uid}`;
  return el("div", { class: "field" }, el("label", { for: input.id }, label), input, hint ? el("span", { class: "hint" }, hint) : null);
}
const numberInput = (value, attrs = {}) => el("input", { type: "number", value: String(value), step: "any", inputmode: "decimal", ...attrs });
const val = (input) => (input.value === "" ? null : Number(input.value));
const errorBox = (box, error) => clear(box, el("p", { class: "error", role: "alert" }, errorText(error)));
const mm3 = (v) => (v === null || v === undefined ? "—" : `${num(v, 0)} mm³`);

function readingsTable(readings) {
  return el("table", { class: "compare tu-readings", id: "tumour-readings" },
    el("caption", `${readings.length} tumour-size readings from the record (LOINC ${TUMOUR_SIZE_CODES.join(", ")})`),
    el("thead", el("tr", ["Date", "Day", "Size", "Volume (mm³)", "Code"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", readings.map((o) => {
      const v = volumeMm3(o.value, o.unit);
      return el("tr", el("td", day(o.effective)), el("td", { class: "num" }, num((new Date(o.effective) - new Date(readings[0].effective)) / DAY_MS, 0)),
        el("td", { class: "num" }, `${o.value} ${o.unit || ""}`.trim()), el("td", { class: "num" }, v === null ? "unit not usable" : num(v, 0)),
        el("td", { title: o.display || "" }, o.code));
    })));
}

// rows editor of the compare form: [key, label, kind, attrs]
function rowsEditor(caption, id, columns, initial) {
  const body = el("tbody");
  const add = (values) => {
    const inputs = columns.map(([key, label, kind, attrs]) => el("input", { type: kind, value: values[key] ?? "", "aria-label": label,
      ...(kind === "number" ? { step: "any", inputmode: "decimal" } : { maxlength: "40" }), ...(attrs || {}) }));
    const tr = el("tr", inputs.map((i) => el("td", i)),
      el("td", el("button", { type: "button", class: "link", on: { click: () => tr.remove() } }, "Remove")));
    tr.read = () => Object.fromEntries(columns.map(([key, , kind], i) => [key, kind === "number" ? val(inputs[i]) : inputs[i].value.trim()]));
    body.append(tr);
  };
  for (const v of initial) add(v);
  const blank = Object.fromEntries(columns.map(([k]) => [k, ""]));
  return { node: el("div", el("table", { class: "rows", id }, el("caption", caption),
      el("thead", el("tr", columns.map(([, label]) => el("th", { scope: "col" }, label)), el("th", el("span", { class: "visually-hidden" }, "Actions")))), body),
      el("button", { type: "button", class: "secondary small", on: { click: () => add(blank) } }, "Add row")),
    read: () => [...body.children].map((r) => r.read()) };
}

function fitSummary(lesion, fitted) {
  const chosen = lesion.laws[lesion.model];
  const laws = Object.entries(lesion.laws);
  return [
    el("p", { class: lesion.note && lesion.note.includes("did not converge") ? "warn-text" : "ok-text", id: "tumour-model" },
      `Fitted: ${lawName(lesion.model)} (${lesion.model}) · AIC ${num(chosen.aic, 2)} · ${lesion.readings} readings`,
      fitted.twin_version ? ` · saved as twin version ${fitted.twin_version}` : ""),
    lesion.note ? el("p", { class: "muted", id: "tumour-note" }, lesion.note) : null,
    el("details", { class: "tu-laws" }, el("summary", "Every growth law: AIC, BIC and parameters"),
      el("table", { class: "compare", id: "tumour-laws" }, el("caption", "Lower AIC is better; a law with more parameters than readings is not determined"),
        el("thead", el("tr", ["Law", "AIC", "BIC", "Converged", "Parameters"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", laws.map(([key, law]) => el("tr", { class: key === lesion.model ? "chosen" : "", dataset: { law: key } },
          el("th", { scope: "row" }, lawName(key), key === lesion.model ? " (chosen)" : ""),
          el("td", { class: "num" }, law.determined ? num(law.aic, 2) : "not determined"),
          el("td", { class: "num" }, law.determined ? num(law.bic, 2) : "—"), el("td", law.converged ? "yes" : "no"),
          el("td", Object.entries(law.parameters).map(([p, v]) => `${p} ${Number(v.value).toPrecision(3)} ${v.unit}`).join(" · "))))))),
  ];
}

function forecastText(point, assessment) {
  const band = point.lower_mm3 === null ? ` (${point.interval})`
    : ` (${Math.round(LEVEL * 100)} % interval ${num(point.lower_mm3, 0)}–${num(point.upper_mm3, 0)} mm³)`;
  return `Forecast at the next assessment, ${day(assessment)} (${num(point.days_ahead, 0)} days after the last reading): ${num(point.volume_mm3, 0)} mm³${band}`;
}

const SCENARIO_COLOURS = ["#0b5cad", "#b3261e", "#2e7d32", "#6a3d9a", "#8a5300"];

function drawChart(chart, readings, curve, compared) {
  const t0 = new Date(readings[0].effective).getTime();
  const xs = readings.map((o) => new Date(o.effective).getTime());
  const series = [{ id: "readings", label: "Readings (volume from size)", type: "points", x: xs, y: readings.map((o) => volumeMm3(o.value, o.unit)),
    color: "#1d2430", radius: 4, primary: true }];
  if (curve) {
    const at = (p) => t0 + p.day * DAY_MS;
    const banded = curve.points.filter((p) => p.lower_mm3 !== null);
    series.push({ id: "band", label: `${Math.round(LEVEL * 100)} % forecast interval`, type: "band", x: banded.map(at),
      y: banded.map((p) => p.lower_mm3), y2: banded.map((p) => p.upper_mm3), color: "#0b5cad", fill: "rgba(11, 92, 173, 0.16)", cursor: false });
    series.push({ id: "fit", label: `Fitted ${lawName(curve.model)}`, type: "line", x: curve.points.filter((p) => p.days_ahead <= 0).map(at),
      y: curve.points.filter((p) => p.days_ahead <= 0).map((p) => p.volume_mm3), color: "#0b5cad", width: 2 });
    series.push({ id: "forecast", label: "Forecast", type: "line", x: curve.points.filter((p) => p.days_ahead >= 0).map(at),
      y: curve.points.filter((p) => p.days_ahead >= 0).map((p) => p.volume_mm3), color: "#0b5cad", width: 2, dash: [6, 4] });
  }
  // chemotherapy scenarios at the assessment (radiotherapy ones have no volume: not callable)
  const lesion = compared && compared.lesions[0];
  const shown = lesion ? lesion.scenarios.filter((s) => s.volume_mm3 !== null) : [];
  shown.forEach((s, i) => series.push({ id: `scenario-${i}`, label: `${s.name}: ${s.recist}`, type: "points",
    x: [t0 + lesion.assessment_day * DAY_MS], y: [s.volume_mm3], color: SCENARIO_COLOURS[i % SCENARIO_COLOURS.length], radius: 5 }));
  const end = Math.max(...series.map((s) => (s.x.length ? s.x[s.x.length - 1] : t0)));
  const margin = Math.max(DAY_MS, (end - t0) * 0.03);  // the first reading and the assessment points off the edges
  chart.range = [t0 - margin, end + margin];
  chart.setSeries(series);
}

async function fitAndForecast(id, readings, model, aheadDays) {
  const span = (new Date(readings[readings.length - 1].effective) - new Date(readings[0].effective)) / DAY_MS;
  // the curve: from the first reading to the assessment (the API's forecast of the same law; no interval before the last reading)
  const [before, after] = CURVE_POINTS;
  const horizons = [...Array.from({ length: before }, (_, i) => -span * (1 - i / (before - 1))),
    ...Array.from({ length: after }, (_, i) => (aheadDays * (i + 1)) / after)];
  const base = `/patients/${encodeURIComponent(id)}/tumour`;
  const [fitted, forecast] = await Promise.all([call(`${base}/fit`, { body: { model } }),
    call(`${base}/forecast`, { body: { model, horizon_days: horizons, level: LEVEL } })]);
  return { fitted, forecast };
}

function scenarioTable(lesion) {
  const cols = lesion.scenarios;
  const row = (label, cell) => el("tr", el("th", { scope: "row" }, label), cols.map((s, i) => el("td", { class: "num", dataset: { col: String(i) } }, cell(s))));
  const rt = (s, key, digits) => (s.kind === "radiotherapy" ? num(s[key], digits) : "—");
  return el("table", { class: "compare", id: "tumour-compare" },
    el("caption", `At the assessment on day ${num(lesion.assessment_day, 0)} after the first reading; growth law ${lawName(lesion.model)}`),
    el("thead", el("tr", el("th", { scope: "col" }, "Scenario"), cols.map((s) => el("th", { scope: "col" }, s.name)))),
    el("tbody",
      row("Kind", (s) => s.kind),
      row("Volume", (s) => (s.volume_mm3 === null ? "not callable" : mm3(s.volume_mm3))),
      row("Longest diameter", (s) => (s.diameter_mm === undefined ? "—" : `${num(s.diameter_mm, 1)} mm`)),
      row("RECIST", (s) => el("span", { class: `recist recist-${s.recist.replace(/\s+/g, "-")}`, title: s.reason || "" }, s.recist)),
      row("Cell kill (log₁₀)", (s) => rt(s, "log10_cell_kill", 2)),
      row("BED (Gy)", (s) => rt(s, "bed_gy", 1)),
      row("EQD2 (Gy)", (s) => rt(s, "eqd2_gy", 1)),
      row("BED with repopulation (Gy)", (s) => rt(s, "bed_with_repopulation_gy", 1))));
}

function renderCompare(box, r) {
  const lesion = r.lesions[0];
  const reasons = [...new Set(lesion.scenarios.filter((s) => s.reason).map((s) => s.reason))];
  const rb = r.radiobiology;
  clear(box, el("div", { class: "compare-wrap" }, scenarioTable(lesion)),
    reasons.map((why) => el("p", { class: "warn-text tu-reason" }, `Volume and RECIST after radiotherapy: not callable, because ${why}.`)),
    el("p", { class: "muted" }, `Radiobiology: α/β ${rb.alpha_beta} Gy, α ${rb.alpha} /Gy, potential doubling time ${rb.t_pot} d, repopulation from day ${rb.kickoff}.`),
    el("h4", "Assumptions"), el("ul", { id: "tumour-assumptions" }, r.assumptions.map((a) => el("li", a))));
}

function compareForm(id, aheadInput, modelInput, onCompared) {
  const onTherapy = el("input", { type: "checkbox", id: "tu-current-on", checked: true });
  const current = { kill: numberInput(0.05, { min: "0", max: "5", id: "tu-current-kill" }), cycle: numberInput(21, { min: "1", id: "tu-current-cycle" }),
    on: numberInput(1, { min: "0", id: "tu-current-days" }) };
  const regimens = rowsEditor("Chemotherapy: continue is always shown; stop or switch (log-kill rate while exposed)", "tumour-regimens",
    [["name", "Name", "text"], ["log_kill_per_day", "Log-kill (/d)", "number", { min: "0", max: "5" }],
     ["cycle_days", "Cycle (d)", "number", { min: "1" }], ["days_on", "Days on", "number", { min: "0" }]],
    [{ name: "stop", log_kill_per_day: 0, cycle_days: 21, days_on: 1 },
     { name: "dose-dense q14d", log_kill_per_day: 0.05, cycle_days: 14, days_on: 1 }]);
  const radiotherapy = rowsEditor("Radiotherapy fractionation", "tumour-rt",
    [["name", "Name", "text"], ["total_gy", "Total (Gy)", "number", { min: "0", max: "120" }], ["fractions", "Fractions", "number", { min: "1", max: "60", step: "1" }],
     ["overall_days", "Overall time (d)", "number", { min: "0", max: "120" }]],
    [{ name: "60 Gy / 30 fx", total_gy: 60, fractions: 30, overall_days: 39 }, { name: "55 Gy / 20 fx", total_gy: 55, fractions: 20, overall_days: 26 }]);
  const result = el("div", { class: "wi-result", id: "tumour-compare-result", "aria-live": "polite" });
  const run = el("button", { type: "submit", id: "run-tumour-compare" }, "Compare at the next assessment");
  const sync = () => { for (const input of Object.values(current)) input.disabled = !onTherapy.checked; };
  onTherapy.addEventListener("change", sync);
  const form = el("form", { class: "wi-form", id: "tumour-compare-form" },
    el("fieldset", { class: "regimen" }, el("legend", "Regimen during the readings"),
      el("div", { class: "field check" }, el("label", onTherapy, " The readings were taken on chemotherapy")),
      el("div", { class: "row wrap" }, field("Log-kill (/d)", current.kill, "example rate: enter the regimen's"), field("Cycle (d)", current.cycle), field("Days on", current.on))),
    el("div", { class: "row wrap" }, regimens.node, radiotherapy.node), el("div", { class: "actions" }, run));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { model: modelInput.value, assessment_day: val(aheadInput), regimens: regimens.read(),
      radiotherapy: radiotherapy.read().map((p) => ({ ...p, fractions: p.fractions === null ? null : Math.round(p.fractions) })),
      current: onTherapy.checked ? { name: "current", log_kill_per_day: val(current.kill), cycle_days: val(current.cycle), days_on: val(current.on) } : null };
    run.disabled = true;
    clear(result, el("p", { class: "muted" }, "Comparing…"));
    try {
      const answer = await call(`/patients/${encodeURIComponent(id)}/tumour/compare`, { body });
      renderCompare(result, answer);
      onCompared(answer);
    } catch (error) {
      errorBox(result, error);
    } finally {
      run.disabled = false;
    }
  });
  return el("section", { class: "wi-section tu-compare", "aria-labelledby": "tu-compare-title" },
    el("h3", { id: "tu-compare-title" }, "Regimens side by side"), form, result);
}

export async function mountTumour(panel, ctx) {
  clear(panel, el("h2", "Tumour twin"), el("p", { class: "muted" }, "Loading…"));
  const readings = await sizeReadings(ctx.id, 1000);
  if (!readings.length) {
    clear(panel, el("h2", "Tumour twin"), el("p", { class: "muted" }, `No tumour-size readings in the record (LOINC ${TUMOUR_SIZE_CODES.join(", ")}).`));
    return { destroy() {} };
  }
  const chartHost = el("div", { class: "chart-host" });
  const model = el("select", { id: "tu-model" }, el("option", { value: "auto" }, "auto (lowest AIC)"),
    Object.entries(LAW_NAMES).map(([k, label]) => el("option", { value: k }, label)));
  const ahead = numberInput(56, { id: "tu-ahead", min: "1", max: "365", step: "1" });
  const status = el("div", { class: "wi-result", id: "tumour-fit-result", "aria-live": "polite" });
  const run = el("button", { type: "submit", id: "run-tumour-fit" }, "Fit and forecast");
  const form = el("form", { class: "wi-form", id: "tumour-fit-form" },
    el("div", { class: "row wrap" }, field("Growth law", model), field("Next assessment (days after the last reading)", ahead)),
    el("p", { class: "muted" }, "Fits every growth law to the readings and keeps the fit as a new twin version (see History)."),
    el("div", { class: "actions" }, run));
  clear(panel, el("h2", "Tumour twin"),
    el("div", { class: "wi-grid" },
      el("figure", { class: "chart-card" }, el("figcaption", el("h3", "Lesion volume (mm³): readings, fitted law and forecast")), chartHost),
      el("div", { class: "compare-wrap" }, readingsTable(readings))),
    form, status, compareForm(ctx.id, ahead, model, (answer) => { state.compared = answer; drawChart(chart, readings, state.curve, answer); }));
  const chart = new Chart(chartHost, { label: "Lesion volume", unit: "mm³", x: "time", height: 260, yMin: 0,
                                       xFormat: (t) => day(t), xTickFormat: (t) => dayShort(t) });
  const state = { curve: null, compared: null };
  drawChart(chart, readings, null, null);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    run.disabled = true;
    clear(status, el("p", { class: "muted" }, "Fitting…"));
    try {
      const { fitted, forecast } = await fitAndForecast(ctx.id, readings, model.value, val(ahead));
      const lesion = fitted.lesions[0], curve = forecast.lesions[0];
      const last = curve.points[curve.points.length - 1];
      const assessment = new Date(new Date(readings[0].effective).getTime() + last.day * DAY_MS);
      clear(status, fitSummary(lesion, fitted), el("p", { id: "tumour-forecast" }, forecastText(last, assessment)),
        el("p", { class: "muted" }, `Interval: ${forecast.interval_source}`));
      state.curve = curve;
      drawChart(chart, readings, curve, state.compared);
    } catch (error) {
      errorBox(status, error);
    } finally {
      run.disabled = false;
    }
  });
  return { destroy() { chart.destroy(); } };
}
