// The hospital command centre (#/hospital): the live census per unit and the ED queue, polled every
// POLL_MS with ?after_version (the server answers "unchanged" cheaply until an ADT message changes the
// census), the 48 h forecast from now with its 95 % bands (refreshed when the census changes, at most every
// FORECAST_MS), what-if scenarios side by side, and equipment health. Counts, times and flows only: the
// operations role sees this page and nothing about any patient.
import { call, errorText } from "./api.js";
import { $, clear, el } from "./dom.js";
import { renderEquipment, renderForecast, whatIfForm } from "./hospital-panels.js";

const POLL_MS = 2000;
const FORECAST_MS = 30000;
let timer = null;
let version = null;
let lastForecast = 0;
let forecastVersion = null;
let active = false;

const hours = (h) => (h === null || h === undefined ? "—" : h < 1 ? `${Math.round(h * 60)} min` : `${h.toFixed(1)} h`);

function ensureStyles() {
  if (document.querySelector('link[href="/static/hospital.css"]')) return;
  document.head.append(el("link", { rel: "stylesheet", href: "/static/hospital.css" }));
}

function skeleton(view) {
  clear(view,
    el("div", { class: "panel-head" },
      el("h1", { id: "hospital-title" }, "Command centre"),
      el("span", { id: "cc-meta", class: "muted", "aria-live": "polite" })),
    el("p", { id: "cc-error", class: "error", role: "alert" }),
    el("div", { class: "cc-grid" },
      el("section", { class: "card cc-census", "aria-labelledby": "cc-census-title" },
        el("h2", { id: "cc-census-title" }, "Census now"),
        el("table", { id: "cc-census" },
          el("caption", { class: "visually-hidden" }, "Patients per unit, usable beds now and time in unit"),
          el("thead", el("tr", ...["Unit", "Patients", "Beds now", "Occupancy", "Longest", "Median"].map(
            (h) => el("th", { scope: "col" }, h)))),
          el("tbody"))),
      el("section", { class: "card", "aria-labelledby": "cc-ed-title" },
        el("h2", { id: "cc-ed-title" }, "ED queue"), el("div", { id: "cc-ed" })),
      el("section", { class: "card", "aria-labelledby": "cc-flow-title" },
        el("h2", { id: "cc-flow-title" }, "Flows, last 24 h"), el("div", { id: "cc-flows" }))),
    el("section", { class: "card cc-wide", "aria-labelledby": "cc-forecast-title" },
      el("h2", { id: "cc-forecast-title" }, "Forecast, next 48 h (95 % prediction bands)"),
      el("div", { id: "cc-forecast", class: "cc-forecast" }, el("p", { class: "muted" }, "Forecasting…"))),
    el("section", { class: "card cc-wide", "aria-labelledby": "cc-whatif-title" },
      el("h2", { id: "cc-whatif-title" }, "What-if, side by side (paired 95 % CIs against the baseline)"),
      el("div", { id: "cc-whatif" })),
    el("section", { class: "card cc-wide", "aria-labelledby": "cc-equipment-title" },
      el("h2", { id: "cc-equipment-title" }, "Equipment health"), el("div", { id: "cc-equipment" })));
}

function renderCensus(census) {
  const rows = census.units.map((u) => {
    const share = u.capacity_now > 0 ? u.patients / u.capacity_now : (u.patients > 0 ? Infinity : 0);
    const bar = el("span", { class: `cc-bar${share > 1 ? " over" : share > 0.9 ? " high" : ""}` });
    bar.style.width = `${Math.min(share, 1) * 100}%`;
    return el("tr", { dataset: { unit: u.unit } },
      el("th", { scope: "row" }, u.unit.replaceAll("_", " ")),
      el("td", { class: "num", dataset: { field: "patients" } }, String(u.patients)),
      el("td", { class: "num" }, String(u.capacity_now)),
      el("td", { title: `${u.patients} of ${u.capacity_now} usable beds` },
        el("span", { class: "cc-track" }, bar), ` ${Number.isFinite(share) ? Math.round(share * 100) : "∞"} %`),
      el("td", { class: "num" }, hours(u.longest_h)),
      el("td", { class: "num" }, hours(u.median_h)));
  });
  clear($("cc-census").tBodies[0], rows);
  const ed = census.ed;
  clear($("cc-ed"),
    el("p", el("strong", { id: "cc-ed-count" }, String(ed.in_department)), " in the department · ",
      el("strong", { id: "cc-ed-waiting" }, String(ed.waiting_beyond_capacity)), " beyond its ",
      String(ed.capacity_now), " usable places · ", el("strong", String(ed.over_4h)), " over 4 h"),
    el("table", el("caption", { class: "visually-hidden" }, "Time in department"),
      el("thead", el("tr", el("th", { scope: "col" }, "Time in ED"), el("th", { scope: "col" }, "Patients"))),
      el("tbody", Object.entries(ed.time_in_department).map(([band, n]) =>
        el("tr", el("th", { scope: "row" }, band), el("td", { class: "num" }, String(n)))))),
    el("p", { class: "muted" }, "ADT tells where a patient is, not whether in a bed: the queue is the patients ",
      "beyond the usable places now."));
  const f = census.flows_24h;
  clear($("cc-flows"), el("ul",
    ...Object.entries(f).map(([k, n]) => el("li", `${k}: `, el("strong", String(n))))),
    el("p", { class: "muted" }, `ADT messages: ${census.messages.accepted} applied, ${census.messages.duplicates} `
      + `repeats, ${census.messages.refused} refused (quarantined)`));
  $("cc-meta").textContent = `${census.total_patients} patients · as of ${new Date(census.as_of).toLocaleTimeString()} `
    + `· census version ${census.version}`;
}

async function refreshForecast() {
  forecastVersion = version;
  lastForecast = Date.now();
  try {
    renderForecast($("cc-forecast"), await call("/hospital/census/forecast", { query: { horizon_h: 48 } }));
  } catch (error) {
    clear($("cc-forecast"), el("p", { class: "error" }, errorText(error)));
  }
}

async function poll() {
  if (!active) return;
  try {
    const census = await call("/hospital/census", { query: version === null ? {} : { after_version: version } });
    $("cc-error").textContent = "";
    if (!census.unchanged) {
      version = census.version;
      renderCensus(census);
    }
    if (forecastVersion !== version && Date.now() - lastForecast >= FORECAST_MS) await refreshForecast();
  } catch (error) {
    $("cc-error").textContent = errorText(error);
  }
  if (active) timer = setTimeout(poll, POLL_MS);
}

export async function showCommandCentre() {
  ensureStyles();
  const view = $("hospital-view");
  if (!active) {
    active = true;
    version = null; forecastVersion = null; lastForecast = 0;
    skeleton(view);
    call("/hospital/live-model").then((model) => whatIfForm($("cc-whatif"), model))
      .catch((error) => clear($("cc-whatif"), el("p", { class: "error" }, errorText(error))));
    call("/hospital/equipment").then((data) => renderEquipment($("cc-equipment"), data))
      .catch((error) => clear($("cc-equipment"), el("p", { class: "muted" }, errorText(error))));
    await poll();
  }
}

export function hideCommandCentre() {
  active = false;
  clearTimeout(timer);
  timer = null;
}
