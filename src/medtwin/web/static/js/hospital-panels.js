// The command centre's panels: the forecast's small multiples (mean and 95 % band per unit, beds as a
// line), the what-if comparison (scenarios from a form, each against the baseline on common random numbers,
// side by side), and equipment health. Everything drawn is what the API answered; nothing is computed here
// beyond placing it on the screen.
import { call, errorText } from "./api.js";
import { clear, el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
};

/** One unit's band: hours on x, patients on y; beds (usable places) as a dashed line when given. */
function bandChart(title, hours, q, beds) {
  const W = 260, H = 120, L = 30, B = 18;
  const finite = [...q.high, ...q.mean, beds || 0].filter((v) => v !== null && Number.isFinite(v));
  const top = Math.max(1, ...finite) * 1.1;
  const x = (h) => L + (h / hours[hours.length - 1]) * (W - L - 4);
  const y = (v) => H - B - (v / top) * (H - B - 6);
  const pts = (arr) => arr.map((v, i) => (v === null ? null : `${x(hours[i]).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: forecast occupancy` });
  chart.append(svg("polygon", { class: "cc-band", points: [...pts(q.high), ...pts(q.low).reverse()].join(" ") }));
  chart.append(svg("polyline", { class: "cc-mean", points: pts(q.mean).join(" ") }));
  if (beds) chart.append(svg("line", { class: "cc-beds", x1: L, x2: W - 4, y1: y(beds), y2: y(beds) }));
  for (const v of [0, Math.round(top / 1.1)]) {
    const label = svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "cc-axis" });
    label.textContent = String(v);
    chart.append(label);
  }
  for (const h of [0, 24, 48].filter((h) => h <= hours[hours.length - 1])) {
    const label = svg("text", { x: x(h), y: H - 4, "text-anchor": "middle", class: "cc-axis" });
    label.textContent = `+${h} h`;
    chart.append(label);
  }
  return chart;
}

export function renderForecast(node, fc) {
  const last = fc.hours.length - 1;
  const figures = fc.units.map((unit) => {
    const q = { mean: fc.occupancy.mean[unit], low: fc.occupancy.low[unit], high: fc.occupancy.high[unit] };
    const at = (arr, i) => (arr[i] === null ? "—" : arr[i].toFixed(0));
    return el("figure", { class: "cc-fig", dataset: { unit } },
      bandChart(unit, fc.hours, q, null),
      el("figcaption", el("strong", unit.replaceAll("_", " ")),
        ` now ${at(q.mean, 0)} · +${fc.hours[last]} h ${at(q.mean, last)} (${at(q.low, last)}–${at(q.high, last)})`));
  });
  clear(node, el("div", { class: "cc-figs" }, figures),
    el("p", { class: "muted" }, `${fc.replications} replications from the live census (version ${fc.version}), the `
      + `model's own parameters; as of ${new Date(fc.as_of).toLocaleTimeString()}, refreshed at most every 30 s.`));
}

const METRICS = [["ed_wait_h", "ED wait (h)"], ["boarding_h", "ED boarding (h)"],
  ["occupancy.ed_treatment", "ED treatment occupancy"], ["occupancy.ward", "Ward occupancy"],
  ["occupancy.icu", "ICU occupancy"], ["wait_h.ward", "Wait for a ward bed (h)"], ["wait_h.icu", "Wait for ICU (h)"],
  ["lost_fraction", "Turned away (fraction)"]];

const WARMUP_H = 168;  // the comparison's warm-up (runs start empty); outages are placed after it
const fmt = (v) => (v === null || v === undefined || !Number.isFinite(v) ? "—" : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3));

function comparisonTable(result) {
  const names = Object.keys(result.scenarios);
  const head = el("tr", el("th", { scope: "col" }, "Measure"), el("th", { scope: "col" }, "Baseline (95 % CI)"),
    ...names.map((n) => el("th", { scope: "col" }, `${n}: change (95 % CI)`)));
  const rows = METRICS.filter(([key]) => result.baseline[key]).map(([key, label]) => {
    const b = result.baseline[key];
    return el("tr", { dataset: { metric: key } }, el("th", { scope: "row" }, label),
      el("td", { class: "num" }, `${fmt(b.mean)} (${fmt(b.low)}–${fmt(b.high)})`),
      ...names.map((n) => {
        const d = result.scenarios[n].difference[key];
        const clear0 = d.low > 0 || d.high < 0;
        return el("td", { class: `num${clear0 ? " cc-sig" : ""}`, title: clear0 ? "the CI excludes no change" : "" },
          `${d.mean > 0 ? "+" : ""}${fmt(d.mean)} (${fmt(d.low)}–${fmt(d.high)})`);
      }));
  });
  return el("table", { id: "cc-compare" },
    el("caption", `${result.replications} paired replications of ${result.weeks} weeks each, seed ${result.seed}`),
    el("thead", head), el("tbody", rows));
}

/** The form: a surge, extra staff on an ED role, and an outage of a unit's beds for some hours; plus, when
 *  the equipment twin predicts a failure within 48 h, that downtime as a fourth scenario. */
export function whatIfForm(node, model) {
  const edRoles = model.roles.map((r) => r.name);
  const field = (id, label, attrs) => el("label", { for: id }, label, el("input", { id, ...attrs }));
  const result = el("div", { id: "cc-whatif-result", "aria-live": "polite" });
  const unitSelect = el("select", { id: "cc-out-unit" }, model.units.map((u) => el("option", { value: u.name }, u.name)));
  unitSelect.value = (model.units.find((u) => u.kind === "icu") || model.units[0]).name;  // a default that bites
  const roleSelect = el("select", { id: "cc-role" }, edRoles.map((r) => el("option", { value: r }, r)));
  const form = el("form", { class: "cc-form", novalidate: true },
    el("fieldset", el("legend", "A: surge"),
      field("cc-surge", "Arrivals ×", { type: "number", min: "0.5", max: "3", step: "0.05", value: "1.3" })),
    el("fieldset", el("legend", "B: staff"), el("label", { for: "cc-role" }, "Role", roleSelect),
      field("cc-extra", "Extra staff every hour", { type: "number", min: "-5", max: "10", step: "1", value: "2" })),
    el("fieldset", el("legend", "C: outage"), el("label", { for: "cc-out-unit" }, "Unit", unitSelect),
      field("cc-out-beds", "Beds out", { type: "number", min: "1", max: "50", step: "1", value: "4" }),
      field("cc-out-hours", "for hours", { type: "number", min: "1", max: "168", step: "1", value: "48" })),
    el("button", { type: "submit", id: "cc-compare-run" }, "Compare"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const role = model.roles.find((r) => r.name === roleSelect.value);
    const extra = Number(form.querySelector("#cc-extra").value);
    const scenarios = [
      { name: "A surge", arrival_multiplier: Number(form.querySelector("#cc-surge").value) },
      { name: "B staff", staff_by_hour: role ? { [role.name]: role.staff_by_hour.map((s) => Math.max(0, s + extra)) } : {} },
      { name: "C outage", outages: [{ unit: unitSelect.value, start_h: WARMUP_H + 24, beds: Number(form.querySelector("#cc-out-beds").value),
        duration_h: Number(form.querySelector("#cc-out-hours").value) }] }];
    const equipment = await call("/hospital/equipment").catch(() => ({ outages: [] }));
    if (equipment.outages.length) {  // hours from now: placed after the warm-up, where the runs are measured
      scenarios.push({ name: "D equipment as predicted",
        outages: equipment.outages.map((o) => ({ ...o, start_h: WARMUP_H + o.start_h })) });
    }
    const button = form.querySelector("button");
    button.disabled = true;
    clear(result, el("p", { class: "muted" }, "Running…"));
    try {
      const body = { model, scenarios, replications: 10, weeks: 4, warmup_weeks: WARMUP_H / 168, seed: 1 };
      clear(result, comparisonTable(await call("/hospital/compare", { body })));
    } catch (error) {
      clear(result, el("p", { class: "error", role: "alert" }, errorText(error)));
    } finally {
      button.disabled = false;
    }
  });
  clear(node, form, result);
}

export function renderEquipment(node, data) {
  if (!data.devices.length) { clear(node, el("p", { class: "muted" }, "No equipment telemetry yet.")); return; }
  const rows = data.devices.map((d) => el("tr", { dataset: { device: d.device } },
    el("th", { scope: "row" }, d.device), el("td", d.kind), el("td", d.metric),
    el("td", { class: "num" }, d.health === null ? "—" : `${Math.round(d.health * 100)} %`),
    el("td", { class: "num" }, d.status === "unknown" ? "—" : d.rul_h === null ? "not rising" : `${d.rul_h.toFixed(0)} h`),
    el("td", { class: `cc-status-${d.status}`, title: d.reason || "" }, d.status === "unknown" ? "not callable" : d.status),
    el("td", { class: "num" }, String(d.samples))));
  clear(node, el("table", { id: "cc-equipment-table" },
    el("caption", { class: "visually-hidden" }, "Equipment health from telemetry"),
    el("thead", el("tr", ...["Device", "Kind", "Signal", "Health", "Remaining life", "Status", "Samples"].map(
      (h) => el("th", { scope: "col" }, h)))), el("tbody", rows)),
  el("p", { class: "muted" }, data.method));
}
