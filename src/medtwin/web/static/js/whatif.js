// What-if tab: run regimens on the twin and compare them side by side with their uncertainty.
// Insulin: POST /twins/{id}/glucose/compare (basal, carb ratio and bolus timing relative to the patient's
// own settings, over the twin's ensemble). Drugs: POST /twins/{id}/drugs/compare (regimens of a drug from
// the library), and POST .../drugs/individualise for a suggested dose from measured levels.
// Every run is stored by the API as a twin version; the page says which.
import { call, errorText, maybe } from "./api.js";
import { clear, el, num } from "./dom.js";
import { Chart } from "./chart.js";
import { panelsRequest } from "./live.js";

const PALETTE = ["#0b5cad", "#b3261e", "#2e7d32", "#6a3d9a"];
const FILLS = ["rgba(11, 92, 173, 0.16)", "rgba(179, 38, 30, 0.14)", "rgba(46, 125, 50, 0.16)", "rgba(106, 61, 154, 0.16)"];
const LETTERS = "ABCD";
const ROUTES = [["oral", "oral"], ["iv_bolus", "IV bolus"], ["iv_infusion", "IV infusion"]];
let uid = 0;

/** Ticks on an hour axis at 1, 2, 3, 6, 12, 24, 48 ... h steps, about one per 90 px. */
function hourTicks(x0, x1, width) {
  const want = Math.max(2, Math.floor(width / 90));
  const step = [1, 2, 3, 6, 12, 24, 48, 72, 168, 336].find((h) => (x1 - x0) / h <= want) || 720;
  const ticks = [];
  for (let v = Math.ceil(x0 / step) * step; v <= x1 + 1e-9; v += step) ticks.push(v);
  return ticks;
}

function field(label, input, hint) {
  const id = input.id || `f${++uid}`;
  input.id = id;
  return el("div", { class: "field" }, el("label", { for: id }, label), input, hint ? el("span", { class: "hint" }, hint) : null);
}
const numberInput = (value, attrs = {}) => el("input", { type: "number", value: String(value), step: "any", inputmode: "decimal", ...attrs });
const textInput = (value, attrs = {}) => el("input", { type: "text", value: value ?? "", ...attrs });
const val = (input) => (input.value === "" ? null : Number(input.value));

function errorBox(box, error) {
  clear(box, el("p", { class: "error", role: "alert" }, errorText(error)));
  box.scrollIntoView({ block: "nearest" });  // in the result box, where the answer would be, not only a toast
}

// ---------------------------------------------------------------------------------------------- insulin

function regimenCard(index, preset, onRemove) {
  const name = textInput(preset.name, { "data-k": "name", maxlength: "40" });
  const basal = numberInput(preset.basal_scale, { min: "0.1", max: "5", step: "0.05", "data-k": "basal_scale" });
  const carb = numberInput(preset.carb_ratio_scale, { min: "0.1", max: "5", step: "0.05", "data-k": "carb_ratio_scale" });
  const offset = numberInput(preset.bolus_offset_min, { min: "-60", max: "120", step: "5", "data-k": "bolus_offset_min" });
  const target = numberInput(preset.target_mg_dl, { min: "70", max: "250", step: "5", "data-k": "target_mg_dl" });
  const boluses = el("input", { type: "checkbox", checked: preset.meal_boluses, "data-k": "meal_boluses" });
  const box = el("fieldset", { class: "regimen", dataset: { index: String(index) } },
    el("legend", el("span", { class: `dot c${index}` }), `Regimen ${LETTERS[index]}`),
    field("Name", name),
    field("Basal rate ×", basal, "1 = the patient's own"),
    field("Carb ratio ×", carb, "> 1: less insulin per gram"),
    field("Bolus timing (min)", offset, "− before the meal, + after"),
    field("Correction target (mg/dL)", target),
    el("div", { class: "field check" }, el("label", boluses, " Meal boluses")),
    onRemove ? el("button", { type: "button", class: "link", on: { click: onRemove } }, `Remove regimen ${LETTERS[index]}`) : null);
  box.read = () => ({ name: name.value.trim() || `Regimen ${LETTERS[index]}`, basal_scale: val(basal), carb_ratio_scale: val(carb),
    bolus_offset_min: val(offset) ?? 0, target_mg_dl: val(target) ?? 140, meal_boluses: boluses.checked });
  return box;
}

function mealsEditor() {
  const rows = el("tbody");
  const add = (time, carbs) => {
    const t = el("input", { type: "time", value: time, step: "60", "aria-label": "Meal time" });
    const g = numberInput(carbs, { min: "1", max: "300", step: "1", "aria-label": "Carbohydrate (g)" });
    const tr = el("tr", el("td", t), el("td", g), el("td", el("button", { type: "button", class: "link", on: { click: () => tr.remove() } }, "Remove")));
    tr.read = () => ({ time: t.value, carbs: val(g) });
    rows.append(tr);
  };
  add("07:30", 45); add("12:30", 70); add("19:00", 80);
  const table = el("table", { class: "meals" }, el("caption", "Meals each day"),
    el("thead", el("tr", el("th", { scope: "col" }, "Time"), el("th", { scope: "col" }, "Carbs (g)"), el("th", el("span", { class: "visually-hidden" }, "Actions")))), rows);
  return { node: el("div", table, el("button", { type: "button", class: "secondary small", on: { click: () => add("16:00", 15) } }, "Add meal")),
           read: () => [...rows.children].map((r) => r.read()) };
}

async function glucoseSection(ctx, open) {
  const base = `/twins/${encodeURIComponent(ctx.id)}/glucose`;
  // which twin the comparison runs on (live twin, else fitted twin, else a named virtual patient): the server decides
  const basis = await maybe(`${base}/basis`).catch(() => null);
  const twin = basis && basis.kind !== "none" ? basis : null;
  const virtual = textInput("adult#001", { id: "wi-virtual", maxlength: "64" });
  const source = twin
    ? el("p", { class: "source", id: "wi-basis", "data-kind": twin.kind }, twin.description)
    : el("div", { class: "source", id: "wi-basis", "data-kind": "none" },
         el("p", basis ? basis.description : "No glucose twin of this patient yet: the comparison runs on a shipped virtual patient, not on this patient."),
         field("Virtual patient", virtual, "e.g. adult#001, adolescent#003, child#002"));
  const horizon = el("select", { id: "wi-horizon" }, [1, 2, 3].map((d) => el("option", { value: String(d) }, `${d * 24} h`)));
  const ensemble = numberInput(50, { id: "wi-ensemble", min: "2", max: "200", step: "1" });
  const meals = mealsEditor();
  const regimens = el("div", { class: "regimens" });
  const presets = [
    { name: "Current", basal_scale: 1, carb_ratio_scale: 1, bolus_offset_min: 0, target_mg_dl: 140, meal_boluses: true },
    { name: "Basal +20 %", basal_scale: 1.2, carb_ratio_scale: 1, bolus_offset_min: 0, target_mg_dl: 140, meal_boluses: true },
    { name: "Pre-bolus 15 min", basal_scale: 1, carb_ratio_scale: 1, bolus_offset_min: -15, target_mg_dl: 140, meal_boluses: true },
    { name: "Carb ratio ×0.8", basal_scale: 1, carb_ratio_scale: 0.8, bolus_offset_min: 0, target_mg_dl: 140, meal_boluses: true },
  ];
  let cards = [];
  const renderCards = () => {
    const values = cards.map((c) => c.read());
    cards = values.map((v, i) => regimenCard(i, v, values.length > 1 ? () => { cards.splice(i, 1); renderCards(); } : null));
    clear(regimens, cards);
    addButton.disabled = cards.length >= 4;
  };
  const addButton = el("button", { type: "button", class: "secondary small", on: { click: () => {
    if (cards.length < 4) { cards.push(regimenCard(cards.length, presets[cards.length], null)); renderCards(); }
  } } }, "Add regimen");
  cards = [regimenCard(0, presets[0], null), regimenCard(1, presets[1], null)];
  const result = el("div", { class: "wi-result", id: "glucose-result", "aria-live": "polite" });
  const run = el("button", { type: "submit", id: "run-glucose" }, "Run on the twin");
  const form = el("form", { class: "wi-form", id: "glucose-form" },
    source, el("div", { class: "wi-setup" },
      el("div", { class: "scenario" }, el("div", { class: "row" }, field("Horizon", horizon), field("Ensemble members", ensemble)), meals.node),
      el("div", { class: "regimen-box" }, el("h4", "Regimens"), regimens, addButton)),
    el("div", { class: "actions" }, run));
  renderCards();
  let chart = null;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const days = Number(horizon.value);
    const mealList = [];
    for (let d = 0; d < days; d++) {
      for (const m of meals.read().filter((x) => x.time && x.carbs).sort((a, b) => a.time.localeCompare(b.time))) {
        const [h, mi] = m.time.split(":").map(Number);
        mealList.push({ time_min: d * 1440 + h * 60 + mi, carbs_g: m.carbs });
      }
    }
    const body = { scenario: { horizon_min: days * 1440, meals: mealList }, regimens: cards.map((c) => c.read()),
                   n_ensemble: val(ensemble) ?? 50 };
    if (!twin) { body.virtual_patient = virtual.value.trim(); body.use_twin = false; }
    run.disabled = true;
    clear(result, el("p", { class: "muted" }, "Running…"));
    const t = performance.now();
    try {
      const r = await call(`${base}/compare`, { body });
      const elapsed = Math.round(performance.now() - t);
      if (chart) chart.destroy();
      chart = renderGlucoseResult(result, r, elapsed);
    } catch (error) {
      errorBox(result, error);
    } finally {
      run.disabled = false;
    }
  });
  return el("details", { class: "wi-section", id: "wi-glucose", open: open || undefined },
    el("summary", el("h3", { id: "wi-glucose-title" }, "Insulin regimens (type 1 diabetes twin)")), form, result);
}

function renderGlucoseResult(box, r, elapsed) {
  const host = el("div", { class: "chart-host" });
  const outcomes = r.outcomes;
  const rows = [
    ["Time in range 70–180", (o) => `${num(o.metrics_median.time_in_range_70_180_percent, 1)} %`, (o) => `${num(o.time_in_range_p5_percent, 1)}–${num(o.time_in_range_p95_percent, 1)} %`],
    ["Time below 70", (o) => `${num(o.metrics_median.time_below_70_percent, 1)} %`, (o) => `95th pct ${num(o.time_below_70_p95_percent, 1)} %`],
    ["Time below 54", (o) => `${num(o.metrics_median.time_below_54_percent, 1)} %`],
    ["Time above 180", (o) => `${num(o.metrics_median.time_above_180_percent, 1)} %`],
    ["Time above 250", (o) => `${num(o.metrics_median.time_above_250_percent, 1)} %`],
    ["Mean glucose", (o) => `${num(o.metrics_median.mean_mg_dl)} mg/dL`],
    ["CV", (o) => `${num(o.metrics_median.cv_percent, 1)} %`],
    ["GMI", (o) => `${num(o.metrics_median.gmi_percent, 1)} %`],
    ["Hypo episodes < 70", (o) => `${o.metrics_median.hypo_episodes_below_70}`],
  ];
  const table = el("table", { class: "compare", id: "glucose-compare" },
    el("caption", `Median over ${r.n_ensemble} ensemble members (range: 5th–95th percentile)`),
    el("thead", el("tr", el("th", { scope: "col" }, "Metric"), outcomes.map((o, i) => el("th", { scope: "col" }, el("span", { class: `dot c${i}` }), o.regimen.name)))),
    el("tbody", rows.map(([label, main, sub]) => el("tr", el("th", { scope: "row" }, label),
      outcomes.map((o) => el("td", { class: "num" }, main(o), sub ? el("span", { class: "sub" }, ` ${sub(o)}`) : null))))));
  const src = r.source.kind === "live_twin" ? `live twin${r.source.live_twin_version == null ? "" : ` v${r.source.live_twin_version}`}`
    : r.source.kind === "glucose_twin" ? `glucose twin v${r.source.glucose_twin_version}` : `virtual patient ${r.source.virtual_patient}`;
  clear(box, el("p", { class: "ok-text", id: "glucose-saved" }, `Compared ${outcomes.length} regimens on ${src} in ${elapsed} ms · saved as twin version ${r.result_version}`),
    el("p", { class: "muted", id: "glucose-basis" }, `Basis: ${r.source.description}`),
    el("div", { class: "wi-grid" }, el("figure", { class: "chart-card" }, el("figcaption", el("h4", "Glucose, median and 5–95 % band")), host),
      el("div", { class: "compare-wrap" }, table)));
  const chart = new Chart(host, { label: "What-if glucose trajectories", unit: "mg/dL", x: "number", height: 260, yMin: 40, yMax: 250,
    zones: [{ from: 70, to: 180, fill: "#e5f3e8" }], rules: [{ y: 70, color: "#b26a00" }, { y: 54, color: "#a61b1b" }],
    xTickFormat: (h) => `${h} h`, xFormat: (h) => `${num(h, 1)} h`, xTicks: hourTicks });
  const series = [];
  outcomes.forEach((o, i) => {
    const x = o.t_min.map((m) => m / 60);
    series.push({ id: `b${i}`, label: `${o.regimen.name} 5–95 %`, type: "band", x, y: o.glucose_p5_mg_dl, y2: o.glucose_p95_mg_dl, color: PALETTE[i], fill: FILLS[i], legend: false, cursor: false });
  });
  outcomes.forEach((o, i) => {
    series.push({ id: `m${i}`, label: o.regimen.name, type: "line", x: o.t_min.map((m) => m / 60), y: o.glucose_median_mg_dl, color: PALETTE[i], width: 2, primary: i === 0,
      describe: (k) => `${o.regimen.name} ${num(o.glucose_median_mg_dl[k])} (${num(o.glucose_p5_mg_dl[k])}–${num(o.glucose_p95_mg_dl[k])}) mg/dL` });
  });
  chart.setSeries(series);
  return chart;
}

// ---------------------------------------------------------------------------------------------- drugs

function scaleDose(text, factor) {
  const m = String(text).match(/^\s*([\d.]+)\s*(.*)$/);
  return m ? `${Math.round(Number(m[1]) * factor * 100) / 100} ${m[2]}`.trim() : text;
}

function drugRegimenCard(index, preset) {
  const dose = textInput(preset.dose, { "data-k": "dose", maxlength: "32" });
  const route = el("select", { "data-k": "route" }, ROUTES.map(([v, l]) => el("option", { value: v, selected: v === preset.route }, l)));
  const interval = numberInput(preset.interval_h, { min: "0.5", step: "0.5" });
  const doses = numberInput(preset.n_doses, { min: "1", max: "1000", step: "1" });
  const infusion = numberInput(preset.infusion_duration_h ?? 1, { min: "0", step: "0.25" });
  const infusionField = field("Infusion (h)", infusion);
  const sync = () => { infusionField.hidden = route.value !== "iv_infusion"; };
  route.addEventListener("change", sync);
  sync();
  const box = el("fieldset", { class: "regimen" }, el("legend", el("span", { class: `dot c${index}` }), `Regimen ${LETTERS[index]}`),
    field("Dose", dose, "with a unit, e.g. 5 mg, 1 g"), field("Route", route), field("Every (h)", interval),
    field("Number of doses", doses), infusionField);
  box.read = () => ({ dose: dose.value.trim(), route: route.value, interval_h: val(interval), n_doses: val(doses),
    infusion_duration_h: route.value === "iv_infusion" ? val(infusion) ?? 1 : 0 });
  return box;
}

function rowsEditor(caption, columns, initial) {
  const body = el("tbody");
  const add = (values) => {
    const inputs = columns.map(([key, label, kind, options]) => kind === "select"
      ? el("select", { "aria-label": label }, options.map(([v, l]) => el("option", { value: v, selected: v === values[key] }, l)))
      : el("input", { type: kind, value: values[key] ?? "", step: "any", "aria-label": label }));
    const tr = el("tr", inputs.map((i) => el("td", i)), el("td", el("button", { type: "button", class: "link", on: { click: () => tr.remove() } }, "Remove")));
    tr.read = () => Object.fromEntries(columns.map(([key, , kind], i) => [key, kind === "number" ? val(inputs[i]) : inputs[i].value.trim()]));
    body.append(tr);
  };
  for (const v of initial) add(v);
  const blank = Object.fromEntries(columns.map(([k, , kind, options]) => [k, kind === "select" ? options[0][0] : ""]));
  return { node: el("div", el("table", { class: "rows" }, el("caption", caption),
      el("thead", el("tr", columns.map(([, label]) => el("th", { scope: "col" }, label)), el("th", el("span", { class: "visually-hidden" }, "Actions")))), body),
      el("button", { type: "button", class: "secondary small", on: { click: () => add(blank) } }, "Add row")),
    read: () => [...body.children].map((r) => r.read()) };
}

const INACTIVE = new Set(["stopped", "completed", "cancelled", "entered-in-error", "inactive"]);

/** The library drug the patient takes (an active medication naming it), or null: the form opens on it. */
function patientsDrug(drugs, page) {
  const summary = page && (page.summary || page);  // GET /patients/{id}: {patient_id, version, summary: {...}}
  const names = ((summary && summary.medications) || [])
    .filter((m) => !INACTIVE.has(m.status || "active")).map((m) => (m.display || "").toLowerCase());
  const found = drugs.find((d) => names.some((n) => n.includes(d.name.toLowerCase())));
  return found ? found.name : null;
}

async function drugSection(ctx) {
  const drugs = await call("/drugs");
  const own = patientsDrug(drugs, ctx.summary);
  const select = el("select", { id: "wi-drug" }, drugs.map((d) => el("option", { value: d.name, selected: d.name === own || undefined },
    d.name === own ? `${d.name} (the patient's medication)` : d.name)));
  if (own) select.value = own;
  const about = el("p", { class: "muted about" });
  const regimens = el("div", { class: "regimens" });
  const horizon = numberInput(168, { id: "wi-drug-horizon", min: "1", max: "2880", step: "1" });
  const samples = numberInput(500, { id: "wi-drug-n", min: "20", max: "5000", step: "10" });
  const cov = {
    age_years: numberInput("", { min: "0", max: "120" }), weight_kg: numberInput("", { min: "1", max: "400" }),
    height_cm: numberInput("", { min: "30", max: "250" }), serum_creatinine_mg_dl: numberInput("", { min: "0.1", max: "20" }),
    sex: el("select", el("option", { value: "" }, "from the record"), el("option", { value: "male" }, "male"), el("option", { value: "female" }, "female")),
    dialysis: el("select", el("option", { value: "" }, "from the record (no)"), el("option", { value: "true" }, "yes"), el("option", { value: "false" }, "no")),
    cyp2c9: textInput("", { placeholder: "e.g. *1/*3" }), vkorc1: textInput("", { placeholder: "e.g. G/A" }),
  };
  const covariates = el("details", { class: "covariates" }, el("summary", "Covariates (blank: taken from the twin)"),
    el("div", { class: "row wrap" }, field("Age (years)", cov.age_years), field("Weight (kg)", cov.weight_kg), field("Height (cm)", cov.height_cm),
      field("Serum creatinine (mg/dL)", cov.serum_creatinine_mg_dl), field("Sex", cov.sex), field("Dialysis", cov.dialysis),
      field("CYP2C9", cov.cyp2c9), field("VKORC1 rs9923231", cov.vkorc1)));
  let cards = [];
  const info = () => drugs.find((d) => d.name === select.value);
  const reset = () => {
    const d = info();
    about.textContent = `${d.description} Source: ${d.source}`;
    const n = Math.max(1, Math.floor(val(horizon) / d.default_interval_h));
    cards = [drugRegimenCard(0, { dose: d.default_dose, route: d.default_route, interval_h: d.default_interval_h, n_doses: n }),
             drugRegimenCard(1, { dose: scaleDose(d.default_dose, 1.5), route: d.default_route, interval_h: d.default_interval_h, n_doses: n })];
    clear(regimens, cards);
  };
  select.addEventListener("change", reset);
  reset();
  const patient = () => {
    const out = {};
    for (const [k, input] of Object.entries(cov)) {
      if (input.value === "") continue;
      out[k] = k === "dialysis" ? input.value === "true" : input.type === "number" ? Number(input.value) : input.value.trim();
    }
    return out;
  };
  const result = el("div", { class: "wi-result", id: "drug-result", "aria-live": "polite" });
  const run = el("button", { type: "submit", id: "run-drug" }, "Compare on the twin");
  const form = el("form", { class: "wi-form", id: "drug-form" }, field("Drug", select), about,
    el("div", { class: "row" }, field("Horizon (h)", horizon), field("Virtual patients", samples)), regimens, covariates,
    el("div", { class: "actions" }, run));
  let charts = [];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { drug: select.value, regimens: cards.map((c) => c.read()), horizon_h: val(horizon), n_samples: val(samples), patient: patient() };
    run.disabled = true;
    clear(result, el("p", { class: "muted" }, "Running…"));
    try {
      const r = await call(`/twins/${encodeURIComponent(ctx.id)}/drugs/compare`, { body });
      for (const c of charts) c.destroy();
      charts = renderDrugResult(result, r);
    } catch (error) {
      errorBox(result, error);
    } finally {
      run.disabled = false;
    }
  });

  // suggested dose from measured levels; the first rows follow the chosen drug (its dose, route and level unit)
  let history, levels;
  const rowsHost = el("div", { class: "row wrap" });
  const resetRows = () => {
    history = rowsEditor("Doses given", [["time_h", "Time (h)", "number"], ["amount", "Amount", "text"], ["route", "Route", "select", ROUTES]],
      [{ time_h: 0, amount: info().default_dose, route: info().default_route }]);
    levels = rowsEditor("Measured levels", [["time_h", "Time (h)", "number"], ["value", "Value", "number"], ["unit", "Unit", "text"]],
      [{ time_h: 12, value: "", unit: info().response === "INR" ? "1" : "mg/L" }]);
    clear(rowsHost, history.node, levels.node);
  };
  resetRows();
  select.addEventListener("change", resetRows);
  const maxAdverse = numberInput(0.1, { min: "0.01", max: "0.5", step: "0.01", id: "wi-max-adverse" });
  const suggestion = el("div", { class: "wi-result", id: "dose-result", "aria-live": "polite" });
  const suggest = el("button", { type: "submit", id: "run-individualise" }, "Suggest a dose");
  const indForm = el("form", { class: "wi-form", id: "dose-form" },
    el("p", { class: "muted" }, "With measured levels the twin is personalised (MAP) and the API suggests the dose with the best chance of reaching the target within the acceptable risk."),
    rowsHost, field("Acceptable probability of the adverse range", maxAdverse),
    el("div", { class: "actions" }, suggest));
  indForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    suggest.disabled = true;
    clear(suggestion, el("p", { class: "muted" }, "Personalising…"));
    try {
      const r = await call(`/twins/${encodeURIComponent(ctx.id)}/drugs/individualise`, { body: {
        drug: select.value, patient: patient(), history: history.read(), levels: levels.read(), max_adverse_probability: val(maxAdverse) } });
      renderSuggestion(suggestion, r);
    } catch (error) {
      errorBox(suggestion, error);
    } finally {
      suggest.disabled = false;
    }
  });

  return el("details", { class: "wi-section", id: "wi-drugs", open: true },
    el("summary", el("h3", { id: "wi-drug-title" }, "Drug regimens (PK/PD with pharmacogenomics)")), form, result,
    el("details", { class: "individualise" }, el("summary", "Suggested dose from measured levels"), indForm, suggestion));
}

function regimenText(g) {
  return `${g.dose} ${ROUTES.find(([v]) => v === g.route)?.[1] || g.route} every ${g.interval_h} h × ${g.n_doses}`;
}

function renderDrugResult(box, r) {
  const outcomes = r.outcomes;
  const concHost = el("div", { class: "chart-host" });
  const respHost = el("div", { class: "chart-host" });
  const hasResponse = outcomes.some((o) => o.response_p50);
  const pct = (p) => `${num(p * 100, 0)} %`;
  const table = el("table", { class: "compare", id: "drug-compare" },
    el("caption", `${r.drug} (${r.model}) · target: ${r.target} · adverse: ${r.adverse}${r.personalised_from_levels ? " · personalised from levels" : ""}`),
    el("thead", el("tr", el("th", { scope: "col" }, ""), outcomes.map((o, i) => el("th", { scope: "col" }, el("span", { class: `dot c${i}` }), regimenText(o.regimen))))),
    el("tbody",
      el("tr", el("th", { scope: "row" }, outcomes[0].metric_name), outcomes.map((o) => el("td", { class: "num" }, num(o.metric_p50, 2), el("span", { class: "sub" }, ` (${num(o.metric_p05, 2)}–${num(o.metric_p95, 2)})`)))),
      el("tr", el("th", { scope: "row" }, "P(target)"), outcomes.map((o) => el("td", { class: "num" }, pct(o.probability_target)))),
      el("tr", el("th", { scope: "row" }, "P(adverse)"), outcomes.map((o) => el("td", { class: "num" }, pct(o.probability_adverse))))));
  const basis = r.basis ? el("details", el("summary", "Covariates used"), el("ul", Object.entries(r.basis.covariates || {}).map(([k, v]) =>
    el("li", `${k}: ${v === null ? "—" : typeof v === "object" ? JSON.stringify(v) : v}${r.basis.covariate_sources && r.basis.covariate_sources[k] ? ` (${r.basis.covariate_sources[k]})` : ""}`))),
    el("p", { class: "muted" }, `Saved as twin version ${r.basis.twin_version}.`)) : null;
  // what each pharmacogene did to this answer, and why (applied, or the population value and the reason)
  const genotype = (r.genotype || []).length ? el("ul", { class: "genotype-effects", id: "drug-genotype" },
    r.genotype.map((g) => el("li", { class: g.applied ? "applied" : "not-applied" },
      `${g.gene} → ${g.parameter} ×${num(g.factor, 2)}${g.applied ? "" : " (not applied)"}: ${g.reason}`))) : null;
  // the genotype the answer ran on, in one sentence: the stored one (and its pgx version), or the
  // genotype-unknown model over population frequencies, with the IWPC clinical dose as a genotype-free number
  const unknown = (r.population_genotypes || []).length > 0;
  const note = r.genotype_note ? el("p", { class: unknown ? "warn-text" : "muted", id: "drug-genotype-note" }, r.genotype_note) : null;
  const clinical = r.clinical_dose ? el("p", { id: "drug-clinical-dose" },
    `Genotype-free alternative: ${num(r.clinical_dose.daily_dose_mg, 1)} mg/day (${num(r.clinical_dose.weekly_dose_mg, 1)} mg/week) by the ${r.clinical_dose.algorithm}; ${r.clinical_dose.basis}.`) : null;
  clear(box, el("p", { class: "ok-text", id: "drug-saved" }, `Compared ${outcomes.length} regimens of ${r.drug}${r.basis ? ` · saved as twin version ${r.basis.twin_version}` : ""}`),
    note, clinical, genotype,
    el("div", { class: "wi-grid" },
      el("figure", { class: "chart-card" }, el("figcaption", el("h4", `${r.concentration_name}: median and 5–95 % band`)), concHost),
      el("div", { class: "compare-wrap" }, table)),
    hasResponse ? el("figure", { class: "chart-card" }, el("figcaption", el("h4", `${outcomes[0].response_name}: median and 5–95 % band`)), respHost) : null,
    basis);
  const make = (host, label, unit, key) => {
    const chart = new Chart(host, { label, unit, x: "number", height: 240, digits: 2, xTickFormat: (h) => `${h} h`,
                                    xFormat: (h) => `${num(h, 1)} h`, xTicks: hourTicks });
    const series = [];
    outcomes.forEach((o, i) => series.push({ id: `b${i}`, label: "", type: "band", x: o.times_h, y: o[`${key}_p05`], y2: o[`${key}_p95`], color: PALETTE[i], fill: FILLS[i], legend: false, cursor: false }));
    outcomes.forEach((o, i) => series.push({ id: `m${i}`, label: regimenText(o.regimen), type: "line", x: o.times_h, y: o[`${key}_p50`], color: PALETTE[i], width: 2, primary: i === 0,
      describe: (k) => `${LETTERS[i]}: ${num(o[`${key}_p50`][k], 2)} (${num(o[`${key}_p05`][k], 2)}–${num(o[`${key}_p95`][k], 2)})` }));
    chart.setSeries(series);
    return chart;
  };
  const charts = [make(concHost, r.concentration_name, "mg/L", "concentration")];
  if (hasResponse) charts.push(make(respHost, outcomes[0].response_name, "", "response"));
  return charts;
}

function renderSuggestion(box, r) {
  clear(box,
    el("p", { class: r.feasible ? "ok-text" : "warn-text", id: "dose-suggestion" },
      r.regimen ? `Suggested: ${regimenText(r.regimen)}` : "No dose meets the target within the acceptable risk.",
      ` · P(target) ${num(r.probability_target * 100)} % · P(adverse) ${num(r.probability_adverse * 100)} % · ${r.metric_name} ${num(r.metric_p50, 2)} (${num(r.metric_p05, 2)}–${num(r.metric_p95, 2)})`),
    r.note ? el("p", { class: "muted" }, r.note) : null,
    el("table", { class: "compare" }, el("caption", "Individual parameters (90 % interval)"),
      el("thead", el("tr", ["Parameter", "Population", "Individual", "90 % interval"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", r.parameters.map((p) => el("tr", el("th", { scope: "row" }, `${p.name} (${p.unit})`), el("td", { class: "num" }, num(p.population, 3)),
        el("td", { class: "num" }, num(p.individual, 3)), el("td", { class: "num" }, `${num(p.ci90_low, 3)}–${num(p.ci90_high, 3)}`))))));
}

export async function mountWhatIf(panel, ctx) {
  clear(panel, el("h2", "What-if: regimens on the twin"), el("p", { class: "muted" }, "Loading…"));
  // Insulin regimens only for a patient the page gives a CGM panel (diabetes or CGM data: the server's panel
  // rules say, #15 item 9), open when there are CGM readings; the drug form opens on the patient's own drug.
  const [row, panels] = await Promise.all([
    call("/dashboard/patients", { query: { q: ctx.id, limit: 1 } }).catch(() => null), panelsRequest(ctx.id).catch(() => null)]);
  const hasCgm = Boolean(row && row.items && row.items[0] && row.items[0].glucose);
  const cgmPanel = !panels || panels.panels.some((p) => p.key === "cgm") || hasCgm;
  const [glucose, drugs] = await Promise.all([
    cgmPanel ? glucoseSection(ctx, hasCgm)
      : el("p", { class: "muted", id: "wi-no-glucose" }, "Insulin regimens are offered for patients with diabetes or CGM data; this record has neither."),
    drugSection(ctx).catch((error) =>
      el("section", { class: "wi-section" }, el("h3", "Drug regimens"), el("p", { class: "error" }, errorText(error))))]);
  clear(panel, el("h2", "What-if: regimens on the twin"),
    el("p", { class: "muted" }, "Each run simulates the regimens on this patient's twin and is kept as a new twin version (see History)."),
    glucose, drugs);
  return { destroy() {} };
}
