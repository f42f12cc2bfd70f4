// The CGM panel of the patient page: the last 3 h with the forecast (its basis named) and its 80/95 % bands; the CGM
// trace with what happened on it (insulin boluses, carbohydrate, rescue treatment of a low, glucose alerts:
// GET /dashboard/patients/{id}/cgm-events); a daily overlay (the last 7 days stacked by time of day in the
// patient's zone, which the panel answer names with where it came from); and the live glucose twin.
import { call } from "./api.js";
import { ago, clear, clock, el, num } from "./dom.js";
import { Chart } from "./chart.js";
import { displayUnit, glucoseZones as vocabZones, metricLabel } from "./vocab.js";

const MINUTE = 60_000, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const COLORS = { glucose: "#0b5cad", forecast: "#6a3d9a", bolus: "#0b3c73", carbs: "#b26a00", rescue: "#a61b1b" };
const SEVERITY = { critical: "#a61b1b", high: "#b3261e", medium: "#b26a00", low: "#4a5568" };
const pad2 = (n) => String(n).padStart(2, "0");

/** Minute of day and calendar day of epoch ms in an IANA zone (Intl; daylight saving per reading). */
function zoned(timeZone) {
  const f = new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit",
                                              hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  return (t) => {
    const p = Object.fromEntries(f.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
    return { day: `${p.year}-${p.month}-${p.day}`, minute: Number(p.hour) * 60 + Number(p.minute) };
  };
}

export function mountCgmTrace(section, ctx, live) {
  const { state, gap, latestPoint } = live;
  let events = { boluses: [], carbs: [], alerts: [] };
  let overlay = false;
  let overlayData = null;
  const figure = (key, title) => el("figure", { class: "chart-card", id: `chart-${key}` }, el("figcaption", el("h3", title)), el("div", { class: "chart-host" }));
  const figs = { near: figure("near", "Glucose now: the last 3 h and the forecast"), glucose: figure("glucose", "Glucose (CGM) with boluses, carbohydrate and alerts"),
                 overlay: figure("overlay", `Daily overlay: the last 7 days by time of day (${live.timeZone || "UTC"}${live.timeZoneSource === "server" ? ", the server's zone: the record states none" : live.timeZoneSource === "record" ? ", the patient's zone" : ""})`) };
  figs.overlay.hidden = true;
  // what the forecast line is built from (the domain's words, vocab/forecast.py basis_label): a flat line of
  // the last reading held is never captioned as the twin's forecast
  const basisNote = el("span", { class: "forecast-basis", id: "forecast-basis" });
  figs.near.querySelector("figcaption").append(el("p", { class: "chart-note muted" }, basisNote));
  figs.glucose.append(el("p", { class: "chart-note muted" }, "▲ insulin bolus · ● carbohydrate · ◆ rescue carbohydrate (for a low) · "
    + "⚠ dashed line: a glucose alert opened. Move over the trace or use the arrow keys to read amounts."));
  const viewGroup = el("div", { class: "segmented", role: "group", "aria-label": "CGM view" },
    el("button", { type: "button", id: "cgm-view-trace", "aria-pressed": "true", on: { click: () => setOverlay(false) } }, "Trace"),
    el("button", { type: "button", id: "cgm-view-overlay", "aria-pressed": "false", on: { click: () => setOverlay(true) } }, "Daily overlay"));
  const twinBox = el("section", { class: "twin-box", id: "live-twin", "aria-labelledby": "live-twin-title" });
  section.append(el("div", { class: "cgm-layout" }, el("div", figs.near, el("div", { class: "live-toolbar" }, viewGroup), figs.glucose, figs.overlay), twinBox));
  const host = (fig) => fig.querySelector(".chart-host");
  const glucoseZones = vocabZones();
  const unit = displayUnit("glucose");
  const nearChart = new Chart(host(figs.near), { label: "Glucose, last 3 hours and forecast", unit, height: 220, yMin: 50, yMax: 200,
    ...glucoseZones, empty: "No CGM readings in the last 3 hours", latest: () => latestPoint("glucose") });
  const glucoseChart = new Chart(host(figs.glucose), { label: metricLabel("glucose"), unit, height: 220, yMin: 40, yMax: 250,
    ...glucoseZones, latest: () => latestPoint("glucose") });
  const overlayChart = new Chart(host(figs.overlay), { label: "Daily overlay", unit, x: "number", height: 240, yMin: 40, yMax: 300, ...glucoseZones,
    xTicks: (x0, x1) => { const t = []; for (let v = 0; v <= 1440; v += 180) if (v >= x0 && v <= x1) t.push(v); return t; },
    xTickFormat: (v) => `${pad2(Math.floor(v / 60) % 24)}:00`, xFormat: (v) => `${pad2(Math.floor(v / 60))}:${pad2(Math.round(v % 60))}`,
    empty: "No CGM readings in the last 7 days" });

  function forecastSeries() {
    const forecast = live.forecast();
    if (!forecast) return [];
    const t0 = Date.parse(forecast.issued_at);
    const x = [t0, ...forecast.horizons_min.map((m) => t0 + m * MINUTE)];
    // The forecast is of the CGM reading and is drawn from the last reading (where the data are); the
    // twin's sensor-corrected estimate is never drawn as if it were a reading (issue 15 item 1).
    const now = forecast.last_reading_mg_dl ?? forecast.cgm_now_mg_dl ?? forecast.glucose_now_mg_dl;
    const withNow = (arr) => [now, ...arr];
    const fx = { x, y: withNow(forecast.mean_mg_dl) };
    const band = (lo, hi) => ({ x, y: withNow(lo), y2: withNow(hi) });
    const at = (i) => forecast.horizons_min[i - 1];
    const label = forecast.basis_label;  // its basis at the horizon the tile quotes (vocab/forecast.py)
    return [
      { id: "f95", label: "95 % interval", type: "band", ...band(forecast.lower95_mg_dl, forecast.upper95_mg_dl),
        color: COLORS.forecast, fill: "rgba(106, 61, 154, 0.14)", cursor: false },
      { id: "f80", label: "80 % interval", type: "band", ...band(forecast.lower80_mg_dl, forecast.upper80_mg_dl),
        color: COLORS.forecast, fill: "rgba(106, 61, 154, 0.28)", cursor: false },
      { id: "forecast", label, type: "line", ...fx, color: COLORS.forecast, dash: [6, 4], width: 2,
        describe: (i) => (i === 0 ? null : `${label}, +${at(i)} min: ${num(fx.y[i])} mg/dL (80 %: ${num(forecast.lower80_mg_dl[i - 1])}–${num(forecast.upper80_mg_dl[i - 1])})`) },
      ...(forecast.material_offset ? [{ id: "twin-estimate", label: "Twin's glucose estimate (sensor error removed)", type: "points",
        x: [t0], y: [forecast.glucose_now_mg_dl], color: COLORS.forecast, cursor: false }] : []),
    ];
  }

  /** Boluses and carbohydrate as markers along the bottom of the trace (their amounts in the readout). */
  function eventSeries() {
    const bol = events.boluses, meals = events.carbs.filter((c) => !c.rescue), rescue = events.carbs.filter((c) => c.rescue);
    const pts = (id, label, list, y, color, shape, text) => ({ id, label, type: "points", shape, radius: 4.5, color,
      x: list.map((e) => Date.parse(e.time)), y: list.map(() => y), gap: 3 * MINUTE, describe: (i) => text(list[i]) });
    return [
      pts("bolus", "Insulin bolus", bol, 46, COLORS.bolus, "triangle", (e) => `bolus ${num(e.value, 1)} U`),
      pts("carbs", "Carbohydrate", meals, 56, COLORS.carbs, "circle", (e) => `carbohydrate ${num(e.grams)} g`),
      pts("rescue", "Rescue carbohydrate (for a low)", rescue, 56, COLORS.rescue, "diamond", (e) => `rescue carbohydrate ${num(e.grams)} g`),
    ].filter((s) => s.x.length);
  }

  function alertMarks() {
    return events.alerts.map((a) => ({ x: Date.parse(a.time), label: "⚠", color: SEVERITY[a.severity] || SEVERITY.low, dash: [2, 2], title: a.message }));
  }

  function draw([x0, x1], windowMs) {
    const forecast = live.forecast();
    const fEnd = forecast ? Date.parse(forecast.issued_at) + Math.max(...forecast.horizons_min) * MINUTE : x1;
    const line = { id: "glucose", label: "CGM glucose", type: "line", x: state.glucose.x, y: state.glucose.y,
                   color: COLORS.glucose, gap: gap("glucose"), primary: true, dots: 2, width: 1.8 };
    const series = [...forecastSeries(), line];
    glucoseChart.marks = [...alertMarks(), { x: x1, label: "now", color: "#4a5568" }];
    glucoseChart.setSeries([...series, ...eventSeries()]);
    glucoseChart.setRange([x0, Math.max(x1, fEnd) + (windowMs <= DAY ? 5 * MINUTE : 0)]);
    nearChart.marks = [...alertMarks(), { x: x1, label: "now", color: "#4a5568" }];
    nearChart.setSeries(series.map((s) => ({ ...s, dots: s.id === "glucose" ? 3 : s.dots, width: s.id === "glucose" ? 2.2 : s.width })));
    nearChart.setRange([x1 - 3 * HOUR, Math.max(x1 + HOUR, fEnd) + 5 * MINUTE]);
    const fc = series.find((s) => s.id === "forecast");
    const cgm = state.glucose.y;  // what is drawn, for a reader (and the browser test) to compare
    figs.near.dataset.forecastStart = fc ? String(fc.y[0]) : "";
    basisNote.textContent = fc ? `${fc.label}${forecast.issued_at ? ` (issued from the CGM reading at ${clock(forecast.issued_at)})` : ""}` : "";
    figs.near.dataset.lastCgm = cgm.length ? String(cgm[cgm.length - 1]) : "";
    figs.glucose.dataset.boluses = String(events.boluses.length);
    figs.glucose.dataset.carbs = String(events.carbs.length);
    figs.glucose.dataset.rescue = String(events.carbs.filter((c) => c.rescue).length);
    figs.glucose.dataset.alerts = String(events.alerts.length);
  }

  async function loadOverlay() {
    const end = state.glucose.x.length ? state.glucose.x[state.glucose.x.length - 1] : Date.now();
    const s = await call(`/patients/${encodeURIComponent(ctx.id)}/samples`, { query: { metric: "glucose", start: new Date(end - 7 * DAY).toISOString(), max_points: 4000 } });
    const where = zoned(live.timeZone || "UTC");
    const days = new Map();
    for (let i = 0; i < s.times.length; i++) {
      const { day, minute } = where(Date.parse(s.times[i]));
      if (!days.has(day)) days.set(day, { x: [], y: [] });
      days.get(day).x.push(minute); days.get(day).y.push(s.values[i]);
    }
    overlayData = [...days.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    const n = overlayData.length;
    overlayChart.setRange([0, 1440]);
    overlayChart.setSeries(overlayData.map(([day, d], k) => ({ id: day, label: k === n - 1 ? `${day} (latest)` : day, type: "line", x: d.x, y: d.y,
      color: k === n - 1 ? COLORS.glucose : `hsla(${200 + (k * 140) / Math.max(1, n)}, 45%, 45%, 0.55)`, width: k === n - 1 ? 2.4 : 1.2, gap: 16,
      primary: k === n - 1 })));
    figs.overlay.dataset.days = String(n);
  }

  async function setOverlay(on) {
    overlay = on;
    figs.overlay.hidden = !on;
    figs.glucose.hidden = on;
    viewGroup.querySelector("#cgm-view-trace").setAttribute("aria-pressed", on ? "false" : "true");
    viewGroup.querySelector("#cgm-view-overlay").setAttribute("aria-pressed", on ? "true" : "false");
    if (on) await loadOverlay().catch((error) => { figs.overlay.dataset.error = String(error); });
  }

  async function load([x0, x1]) {
    events = await call(`/dashboard/patients/${encodeURIComponent(ctx.id)}/cgm-events`,
      { query: { start: new Date(x0).toISOString(), end: new Date(x1 + HOUR).toISOString() } }).catch(() => events);
    if (overlay) await loadOverlay().catch(() => {});
  }

  function renderTwin() {
    const twin = live.twin(), forecast = live.forecast();
    if (!twin) {
      clear(twinBox, el("h3", { id: "live-twin-title" }, "Live glucose twin"),
            el("p", { class: "muted" }, "Not following this patient (it starts with the first CGM reading)."));
      return;
    }
    // the newer of the forecast and the status (a forecast event arrives before the status is read again)
    const now = forecast && Date.parse(forecast.issued_at) >= Date.parse(twin.data_time) ? forecast : twin;
    const ci = twin.insulin_sensitivity_ci95 || [];
    const from = twin.started_from || {};
    const source = from.kind === "glucose_twin" ? `fitted glucose twin v${from.glucose_twin_version}` : "the cohort prior";
    clear(twinBox, el("h3", { id: "live-twin-title" }, "Live glucose twin"),
      el("dl", { class: "facts-grid" },
        el("dt", "Insulin sensitivity"), el("dd", { id: "live-isr" }, `×${num(twin.insulin_sensitivity_ratio, 2)}`,
          ci.length === 2 ? el("span", { class: "sub" }, ` (95 %: ${num(ci[0], 2)}–${num(ci[1], 2)})`) : null),
        el("dt", "Glucose estimate"), el("dd", { title: "the twin's interstitial glucose with the estimated sensor error removed; not a reading" },
          `${num(now.glucose_now_mg_dl)} mg/dL`,
          // the reading the twin last folded in, with its time (the tile may already show a newer one)
          now.last_reading_mg_dl != null ? el("span", { class: "sub" }, ` (last CGM reading ${num(now.last_reading_mg_dl)}`
            + `${now.issued_at || now.data_time ? ` at ${clock(now.issued_at || now.data_time)}` : ""})`) : null),
        el("dt", "Following since"), el("dd", `${ago(twin.started_at)} · ${twin.samples_assimilated} reading${twin.samples_assimilated === 1 ? "" : "s"}`),
        el("dt", "Started from"), el("dd", source),
        twin.live_twin_version ? [el("dt", "Saved as"), el("dd", `twin version ${twin.live_twin_version}`)] : null),
      el("p", { class: "sub" }, "Insulin sensitivity is relative to the twin it started from (1 = unchanged)."),
      twin.algorithm ? el("details", { class: "sub" }, el("summary", "Method"), el("p", twin.algorithm)) : null);
  }

  return { load, draw, renderTwin, destroy() { for (const c of [nearChart, glucoseChart, overlayChart]) c.destroy(); } };
}
