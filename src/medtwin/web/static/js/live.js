// Live tab: the latest-state tiles (glucose with trend and forecast, NEWS2, heart rate, blood pressure,
// SpO2) and the stream charts (CGM with the twin's 30/60-min forecast and its 80/95 % bands, heart rate,
// blood pressure, SpO2). New samples arrive on the event stream and are drawn without a reload; when the
// stream is down the page polls the latest samples instead.
import { call, errorText, maybe } from "./api.js";
import { ago, clear, clock, el, news2Badge, news2Label, num, throttle, trendNode } from "./dom.js";
import { Chart, lowerBound } from "./chart.js";
import { onStatus, subscribe } from "./events.js";
import { mountAlerts } from "./alerts.js";
import { displayUnit, glucoseClass, glucoseZones as vocabZones, metricLabel } from "./vocab.js";

const MINUTE = 60_000, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const RANGES = [["6 h", 6 * HOUR], ["24 h", DAY], ["3 d", 3 * DAY], ["7 d", 7 * DAY], ["30 d", 30 * DAY]];
const COLORS = { glucose: "#0b5cad", forecast: "#6a3d9a", heart_rate: "#b3261e", systolic_bp: "#0b5cad",
                 diastolic_bp: "#2e7d32", spo2: "#00695c" };
// Metrics drawn, with the gap (ms) that breaks a line (a sensor off for longer than that).
const STREAMS = { glucose: 16 * MINUTE, heart_rate: 5 * MINUTE, systolic_bp: 3 * HOUR, diastolic_bp: 3 * HOUR,
                  spo2: 10 * MINUTE };
const TILE_METRICS = ["heart_rate", "systolic_bp", "diastolic_bp", "spo2", "respiratory_rate", "body_temperature"];

function parseTimes(times) {
  const out = new Array(times.length);
  for (let i = 0; i < times.length; i++) out[i] = Date.parse(times[i]);
  return out;
}

/** Insert (t, v) keeping x sorted (new samples are nearly always last). */
function insert(series, t, v) {
  const xs = series.x;
  if (!xs.length || t > xs[xs.length - 1]) { xs.push(t); series.y.push(v); return true; }
  const i = lowerBound(xs, t);
  if (xs[i] === t) { series.y[i] = v; return false; }
  xs.splice(i, 0, t); series.y.splice(i, 0, v);
  return true;
}

/** Samples from an event: a sample, a list of samples, or {samples: [...]} (patient_id on each or on the event). */
function samplesOf(data) {
  if (!data || typeof data !== "object") return [];
  if (Array.isArray(data)) return data.flatMap(samplesOf);
  if (Array.isArray(data.samples)) return data.samples.map((s) => ({ patient_id: data.patient_id, ...s }));
  if (data.metric && data.value !== undefined && data.time) return [data];
  return [];
}

function seriesRequests(base, startMs, width) {
  const start = new Date(startMs).toISOString();
  const maxPoints = Math.max(1000, Math.round(Math.max(600, width) * 2));  // two points per pixel column
  return Promise.all(Object.keys(STREAMS).map((metric) =>
    call(`${base}/samples`, { query: { metric, start, max_points: maxPoints } })
      .then((s) => [metric, s]).catch((error) => [metric, error])));
}

function latestRequests(id) {
  const base = `/patients/${encodeURIComponent(id)}`;
  return Promise.all([
    maybe(`${base}/samples/latest`).catch(() => null),
    call("/dashboard/patients", { query: { q: id, limit: 1 } }).catch(() => null),
    maybe(`${base}/forecast`).catch(() => null),
    maybe(`${base}/news2`).catch(() => null),
    maybe(`${base}/twin/live`).catch(() => null),
  ]);
}

/** Start the live tab's requests while the page is still asking for the summary (one round trip less). */
export function prefetchLive(id) {
  return { series: seriesRequests(`/patients/${encodeURIComponent(id)}`, Date.now() - DAY, window.innerWidth * 0.66),
           latest: latestRequests(id) };
}

export function mountLive(panel, tiles, ctx, openedAt, prefetched) {
  const id = ctx.id;
  const base = `/patients/${encodeURIComponent(id)}`;
  let windowMs = DAY;
  let forecast = null;
  let overview = null;
  let latest = {};
  let news2 = null;
  let twin = null;
  let destroyed = false;
  let pollTimer = null;
  const unsubscribers = [];
  const state = {};
  for (const metric of Object.keys(STREAMS)) state[metric] = { x: [], y: [] };

  // --- layout -------------------------------------------------------------------------------------------
  const rangeGroup = el("div", { class: "segmented", role: "group", "aria-label": "Time window" });
  for (const [label, ms] of RANGES) {
    rangeGroup.append(el("button", { type: "button", "aria-pressed": ms === windowMs ? "true" : "false",
      dataset: { ms: String(ms) }, on: { click: () => setWindow(ms) } }, label));
  }
  const status = el("p", { class: "muted live-note", "aria-live": "polite" });
  const chartBox = (key, title) => el("figure", { class: "chart-card", id: `chart-${key}` },
    el("figcaption", el("h3", title)), el("div", { class: "chart-host" }));
  const figs = {
    near: chartBox("near", "Glucose now: the last 3 h and the twin's forecast"),
    glucose: chartBox("glucose", "Glucose (CGM)"),
    heart_rate: chartBox("hr", "Heart rate"),
    bp: chartBox("bp", "Blood pressure"),
    spo2: chartBox("spo2", "SpO₂"),
  };
  const alertsBox = el("div", { class: "alerts-box" });
  const twinBox = el("section", { class: "twin-box", id: "live-twin", "aria-labelledby": "live-twin-title" });
  const side = el("aside", { class: "alerts-panel", "aria-label": "Alerts and the live twin" }, alertsBox, twinBox);
  clear(panel, el("div", { class: "live-grid" },
    el("div", { class: "live-charts" }, figs.near, el("div", { class: "live-toolbar" }, rangeGroup, status),
       figs.glucose, figs.heart_rate, figs.bp, figs.spo2),
    side));
  const host = (fig) => fig.querySelector(".chart-host");

  const glucoseZones = vocabZones();
  const unit = displayUnit;
  const nearChart = new Chart(host(figs.near), { label: "Glucose, last 3 hours and forecast", unit: unit("glucose"), height: 220,
    yMin: 50, yMax: 200, ...glucoseZones, empty: "No CGM readings in the last 3 hours" });
  const glucoseChart = new Chart(host(figs.glucose), {
    label: metricLabel("glucose"), unit: unit("glucose"), height: 200, yMin: 40, yMax: 250, ...glucoseZones,
  });
  const hrChart = new Chart(host(figs.heart_rate), { label: metricLabel("heart_rate"), unit: unit("heart_rate"), height: 150, yMin: 50, yMax: 110 });
  const bpChart = new Chart(host(figs.bp), { label: "Blood pressure", unit: unit("systolic_bp"), height: 150, yMin: 60, yMax: 150 });
  const spo2Chart = new Chart(host(figs.spo2), { label: metricLabel("spo2"), unit: unit("spo2"), height: 130, yMin: 88, yMax: 100 });

  const line = (metric, label, extra = {}) => ({ id: metric, label, type: "line", x: state[metric].x, y: state[metric].y,
    color: COLORS[metric], gap: state[metric].gap || STREAMS[metric], ...extra });

  function forecastSeries() {
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
    return [
      { id: "f95", label: "95 % interval", type: "band", ...band(forecast.lower95_mg_dl, forecast.upper95_mg_dl),
        color: COLORS.forecast, fill: "rgba(106, 61, 154, 0.14)", cursor: false },
      { id: "f80", label: "80 % interval", type: "band", ...band(forecast.lower80_mg_dl, forecast.upper80_mg_dl),
        color: COLORS.forecast, fill: "rgba(106, 61, 154, 0.28)", cursor: false },
      { id: "forecast", label: "Forecast (mean)", type: "line", ...fx, color: COLORS.forecast, dash: [6, 4], width: 2,
        describe: (i) => (i === 0 ? null : `forecast +${at(i)} min ${num(fx.y[i])} mg/dL (80 %: ${num(forecast.lower80_mg_dl[i - 1])}–${num(forecast.upper80_mg_dl[i - 1])})`) },
      ...(materialOffset() ? [{ id: "twin-estimate", label: "Twin's glucose estimate (sensor error removed)", type: "points",
        x: [t0], y: [forecast.glucose_now_mg_dl], color: COLORS.forecast, cursor: false }] : []),
    ];
  }

  function materialOffset() {
    return Boolean(forecast && forecast.material_offset);  // the threshold is the vocabulary's (vocab/forecast.py)
  }

  function range() {
    const now = Date.now();
    let end = now;
    for (const metric of Object.keys(STREAMS)) {
      const xs = state[metric].x;
      if (xs.length) end = Math.max(end, xs[xs.length - 1]);
    }
    return [end - windowMs, end];
  }

  function drawAll() {
    const [x0, x1] = range();
    const fEnd = forecast ? Date.parse(forecast.issued_at) + Math.max(...forecast.horizons_min) * MINUTE : x1;
    const glucoseSeries = [...forecastSeries(), line("glucose", "CGM glucose", { primary: true, dots: 2, width: 1.8 })];
    glucoseChart.marks = [{ x: x1, label: "now", color: "#4a5568" }];
    glucoseChart.setSeries(glucoseSeries);
    glucoseChart.setRange([x0, Math.max(x1, fEnd) + (windowMs <= DAY ? 5 * MINUTE : 0)]);
    nearChart.marks = [{ x: x1, label: "now", color: "#4a5568" }];
    nearChart.setSeries(glucoseSeries.map((s) => ({ ...s, dots: s.id === "glucose" ? 3 : s.dots, width: s.id === "glucose" ? 2.2 : s.width })));
    nearChart.setRange([x1 - 3 * HOUR, Math.max(x1 + HOUR, fEnd) + 5 * MINUTE]);
    const fc = glucoseSeries.find((s) => s.id === "forecast");
    const cgm = state.glucose.y;  // what is drawn, for a reader (and the browser test) to compare
    figs.near.dataset.forecastStart = fc ? String(fc.y[0]) : "";
    figs.near.dataset.lastCgm = cgm.length ? String(cgm[cgm.length - 1]) : "";
    hrChart.setSeries([line("heart_rate", metricLabel("heart_rate"))]);
    hrChart.setRange([x0, x1]);
    bpChart.setSeries([line("systolic_bp", "Systolic", { dots: 2.5 }), line("diastolic_bp", "Diastolic", { dots: 2.5 })]);
    bpChart.setRange([x0, x1]);
    spo2Chart.setSeries([line("spo2", "SpO₂")]);
    spo2Chart.setRange([x0, x1]);
  }

  // --- tiles --------------------------------------------------------------------------------------------
  function tile(key, label, value, unit, sub, cls = "") {
    return el("div", { class: `tile ${cls}`.trim(), id: `tile-${key}` },
      el("h3", label), el("p", { class: "value" }, value, unit ? el("span", { class: "unit" }, ` ${unit}`) : null),
      sub ? el("p", { class: "sub" }, sub) : null);
  }

  function forecastText() {
    if (!forecast) return null;
    // the one sentence the alerts use too: measured value and trend, then the forecast (vocab/forecast.py)
    if (forecast.summary) return el("span", { class: "forecast-line" }, el("span", { class: "fc", id: "forecast-30" }, forecast.summary));
    const parts = [];
    for (const h of [30, 60]) {
      const i = forecast.horizons_min.indexOf(h);
      if (i < 0) continue;
      parts.push(el("span", { class: "fc", id: `forecast-${h}` }, `${h} min: `, el("strong", num(forecast.mean_mg_dl[i])),
        ` (${num(forecast.lower80_mg_dl[i])}–${num(forecast.upper80_mg_dl[i])})`));
    }
    return parts.length ? el("span", { class: "forecast-line" }, "Forecast ", ...parts.flatMap((p, k) => (k ? [" · ", p] : [p]))) : null;
  }

  function renderTiles() {
    const g = overview && overview.glucose;  // with the server's trend
    const gl = latest.glucose;  // the newest reading (from events, ahead of the overview)
    const newest = gl && (!g || Date.parse(gl.time) > Date.parse(g.time)) ? gl : g;
    const glucoseValue = newest ? newest.value : null;
    const glucoseTime = newest ? newest.time : null;
    const cls = glucoseClass(glucoseValue);
    const glucoseTile = tile("glucose", metricLabel("glucose"), glucoseValue === null ? "—" : el("span", { id: "glucose-now" }, num(glucoseValue)),
      glucoseValue === null ? null : unit("glucose"),
      [g ? trendNode(g.trend, g.trend_mg_dl_per_min) : null, glucoseTime ? ` ${ago(glucoseTime)}` : " no readings",
       g && g.stale ? el("span", { class: "stale" }, " · no recent reading") : null, el("br"), forecastText()], `glucose-tile ${cls}`);
    const n = news2 || (overview && overview.news2);
    const drivers = n && n.sub_scores ? n.sub_scores.filter((x) => x.score > 0).map((x) => `${x.label} ${x.score}`) : [];
    // the current score of the newest observation set (an alert shows its own score and time, labelled)
    const news2Tile = tile("news2", "NEWS2 now (latest set)", n ? news2Badge(n) : "—", null,
      n ? [el("span", { class: "news2-label" }, news2Label(n.band || n.risk)),
           n.complete === false || (n.missing && n.missing.length) ? " · incomplete set (a lower bound)" : "",
           n.time || n.at ? el("span", { class: "news2-at" }, ` · at ${clock(n.time || n.at)}, ${ago(n.time || n.at)}`) : "",
           drivers.length ? el("span", { class: "drivers" }, el("br"), drivers.join(", ")) : null]
        : "no vital signs");
    if (n && n.response) news2Tile.title = `${n.response}${n.monitoring ? ` Monitoring: ${n.monitoring}.` : ""}`;
    const v = (metric, digits = 0) => (latest[metric] ? num(latest[metric].value, digits) : "—");
    const when = (metric) => (latest[metric] ? ago(latest[metric].time) : "no readings");
    clear(tiles, el("h2", { class: "visually-hidden" }, "Latest state"),
      glucoseTile, news2Tile,
      tile("hr", metricLabel("heart_rate"), v("heart_rate"), latest.heart_rate ? unit("heart_rate") : null, when("heart_rate")),
      tile("bp", "Blood pressure", latest.systolic_bp ? `${v("systolic_bp")}/${v("diastolic_bp")}` : "—",
           latest.systolic_bp ? unit("systolic_bp") : null, when("systolic_bp")),
      tile("spo2", metricLabel("spo2"), v("spo2"), latest.spo2 ? unit("spo2") : null, when("spo2")),
      latest.respiratory_rate ? tile("rr", metricLabel("respiratory_rate"), v("respiratory_rate"), unit("respiratory_rate"), when("respiratory_rate")) : null,
      latest.body_temperature ? tile("temp", metricLabel("body_temperature"), v("body_temperature", 1), unit("body_temperature"), when("body_temperature")) : null,
    );
    renderTwin();
  }

  function renderTwin() {
    if (!twin) {
      clear(twinBox, el("h2", { id: "live-twin-title" }, "Live glucose twin"),
            el("p", { class: "muted" }, "Not following this patient (it starts with the first CGM reading)."));
      return;
    }
    // the newer of the forecast and the status (a forecast event arrives before the status is read again)
    const now = forecast && Date.parse(forecast.issued_at) >= Date.parse(twin.data_time) ? forecast : twin;
    const ci = twin.insulin_sensitivity_ci95 || [];
    const from = twin.started_from || {};
    const source = from.kind === "glucose_twin" ? `fitted glucose twin v${from.glucose_twin_version}` : "the cohort prior";
    clear(twinBox, el("h2", { id: "live-twin-title" }, "Live glucose twin"),
      el("dl", { class: "facts-grid" },
        el("dt", "Insulin sensitivity"), el("dd", { id: "live-isr" }, `×${num(twin.insulin_sensitivity_ratio, 2)}`,
          ci.length === 2 ? el("span", { class: "sub" }, ` (95 %: ${num(ci[0], 2)}–${num(ci[1], 2)})`) : null),
        el("dt", "Glucose estimate"), el("dd", { title: "the twin's interstitial glucose with the estimated sensor error removed; not a reading" },
          `${num(now.glucose_now_mg_dl)} mg/dL`,
          now.last_reading_mg_dl != null ? el("span", { class: "sub" }, ` (last CGM reading ${num(now.last_reading_mg_dl)})`) : null),
        el("dt", "Following since"), el("dd", `${ago(twin.started_at)} · ${twin.samples_assimilated} reading${twin.samples_assimilated === 1 ? "" : "s"}`),
        el("dt", "Started from"), el("dd", source),
        twin.live_twin_version ? [el("dt", "Saved as"), el("dd", `twin version ${twin.live_twin_version}`)] : null),
      el("p", { class: "sub" }, "Insulin sensitivity is relative to the twin it started from (1 = unchanged)."),
      twin.algorithm ? el("details", { class: "sub" }, el("summary", "Method"), el("p", twin.algorithm)) : null);
  }

  // --- loading ------------------------------------------------------------------------------------------
  async function loadSeries(requested) {
    const [x0] = range();
    const results = await (requested || seriesRequests(base, Math.min(x0, Date.now() - windowMs),
                                                        host(figs.glucose).clientWidth || 900));
    for (const [metric, s] of results) {
      if (s instanceof Error) { status.textContent = `Could not load ${metric}: ${errorText(s)}`; continue; }
      state[metric].x = parseTimes(s.times);
      state[metric].y = s.values.slice();
      state[metric].total = s.total;
      // a downsampled series keeps a min and a max per bucket: a line may not break between buckets
      const n = state[metric].x.length;
      state[metric].gap = s.total > n && n > 1
        ? Math.max(STREAMS[metric], (4 * (state[metric].x[n - 1] - state[metric].x[0])) / n) : STREAMS[metric];
    }
  }

  async function loadLatest(requested) {
    const [lat, ov, fc, nw, tw] = await (requested || latestRequests(id));
    twin = tw;
    if (lat) latest = lat.latest || {};
    if (ov && ov.items && ov.items[0] && ov.items[0].id === id) overview = ov.items[0];
    forecast = fc && fc.horizons_min ? fc : fc && fc.forecast ? fc.forecast : null;
    news2 = nw && (nw.aggregate !== undefined || nw.score !== undefined) ? normaliseNews2(nw) : null;
  }

  function normaliseNews2(n) {
    return { score: n.score ?? n.aggregate, band: n.band || n.risk, time: n.time || n.at, complete: n.complete,
             missing: n.missing, sub_scores: n.sub_scores, response: n.response, monitoring: n.monitoring };
  }

  async function setWindow(ms) {
    windowMs = ms;
    for (const b of rangeGroup.querySelectorAll("button")) b.setAttribute("aria-pressed", b.dataset.ms === String(ms) ? "true" : "false");
    const t = performance.now();
    await loadSeries();
    if (destroyed) return;
    drawAll();
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    const ms2 = Math.round(performance.now() - t);
    window.medtwinTimings = { ...(window.medtwinTimings || {}), [`window_${ms / HOUR}h_ms`]: ms2 };
    status.textContent = `Showing ${RANGES.find(([, v]) => v === ms)[0]} · ${state.glucose.total ?? state.glucose.x.length} CGM readings, ${state.heart_rate.total ?? state.heart_rate.x.length} heart-rate readings`;
  }

  // --- live updates -------------------------------------------------------------------------------------
  const refreshDerived = throttle(async () => {
    if (destroyed) return;
    await loadLatest();
    if (destroyed) return;
    renderTiles();
    drawAll();
  }, 5000);

  function onSamples(list) {
    let changed = false;
    for (const s of list) {
      if (s.patient_id && s.patient_id !== id) continue;
      const t = Date.parse(s.time);
      if (s.metric in state) changed = insert(state[s.metric], t, Number(s.value)) || changed;
      latest[s.metric] = { time: s.time, value: Number(s.value), unit: s.unit };
      changed = true;
    }
    if (!changed) return;
    renderTiles();
    drawAll();
    refreshDerived();
  }

  unsubscribers.push(subscribe(async (event) => {
    const data = event.data || {};
    if (event.type === "lagged") {  // events were lost: read the state again
      await loadSeries();
      refreshDerived();
      return;
    }
    if (event.patient_id && event.patient_id !== id) return;
    if (event.type === "samples" || event.type === "sample") {
      onSamples(samplesOf(data).map((s) => ({ patient_id: event.patient_id, ...s })));
    } else if (event.type === "forecast") {
      if (data.horizons_min) { forecast = data; renderTiles(); drawAll(); }
      refreshDerived();  // the twin's status too, so its estimate and the forecast's never disagree on screen
    } else if (event.type === "alert") refreshDerived();
  }));

  async function poll() {
    const before = JSON.stringify(latest);
    await loadLatest().catch(() => {});
    if (destroyed) return;
    if (JSON.stringify(latest) !== before) {
      for (const [metric, s] of Object.entries(latest)) if (metric in state) insert(state[metric], Date.parse(s.time), s.value);
    }
    renderTiles();
    drawAll();
  }
  unsubscribers.push(onStatus((s) => {
    clearInterval(pollTimer);
    pollTimer = s === "live" ? null : setInterval(poll, 15_000);
  }));

  const alerts = mountAlerts(alertsBox, ctx);

  (async () => {
    try {
      await Promise.all([loadSeries(prefetched && prefetched.series), loadLatest(prefetched && prefetched.latest)]);
      if (destroyed) return;
      renderTiles();
      drawAll();
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      await alerts.ready;
      const elapsed = Math.round(performance.now() - (openedAt ?? performance.now()));
      window.medtwinTimings = { ...(window.medtwinTimings || {}), patient_open_ms: elapsed,
        glucose_points: state.glucose.x.length, heart_rate_points: state.heart_rate.x.length };
      panel.dataset.ready = "true";
      status.textContent = `Showing 24 h · opened in ${elapsed} ms`;
    } catch (error) {
      status.textContent = errorText(error);
    }
  })();

  return {
    destroy() {
      destroyed = true;
      clearInterval(pollTimer);
      for (const u of unsubscribers) u();
      alerts.destroy();
      for (const c of [nearChart, glucoseChart, hrChart, bpChart, spo2Chart]) c.destroy();
    },
  };
}

