// Live tab: the problem-oriented patient page (issue #15 item 9). The panels come from the API
// (GET /dashboard/patients/{id}/panels: chosen from the patient's problems, medications and data, in order;
// a chosen panel without data is hidden): the CGM panel (the last 3 h with the twin's 30/60-min forecast
// and its bands, the CGM trace with boluses, carbohydrate, rescue treatment and alerts marked, a daily
// overlay, the live glucose twin), the vital-signs flowsheet (vitals.js), and the record panels (INR,
// kidney: recordpanels.js). Tiles show what the panels are about, from the same values the captions quote.
// New samples arrive on the event stream; when it is down the page polls. "Now" is the server's clock.
import { call, errorText, maybe } from "./api.js";
import { ago, clear, clock, day, el, news2Badge, news2Label, num, throttle, trendNode } from "./dom.js";
import { Chart, lowerBound } from "./chart.js";
import { onStatus, subscribe } from "./events.js";
import { mountAlerts } from "./alerts.js";
import { serverNow } from "./clock.js";
import { mountVitals } from "./vitals.js";
import { kindText, mountRecordPanel } from "./recordpanels.js";
import { mountCgmTrace } from "./cgmtrace.js";
import { displayUnit, glucoseClass, metricLabel, shortName, unitText, valueText } from "./vocab.js";

const MINUTE = 60_000, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const RANGES = [["6 h", 6 * HOUR], ["24 h", DAY], ["3 d", 3 * DAY], ["7 d", 7 * DAY], ["30 d", 30 * DAY]];
// Metrics loaded, with the gap (ms) that breaks a line (a sensor off for longer than that).
const STREAMS = { glucose: 16 * MINUTE, heart_rate: 5 * MINUTE, systolic_bp: 3 * HOUR, diastolic_bp: 3 * HOUR,
                  spo2: 10 * MINUTE, respiratory_rate: 10 * MINUTE, body_temperature: 2 * HOUR,
                  supplemental_oxygen: 3 * HOUR, consciousness: 3 * HOUR };

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


/** The panels of a patient's page (the API chooses them); patient.js asks once and shares the answer. */
export const panelsRequest = (id) => call(`/dashboard/patients/${encodeURIComponent(id)}/panels`);

/** Start the live tab's requests while the page is still asking for the summary (one round trip less). */
export function prefetchLive(id, panels = null) {
  return { series: seriesRequests(`/patients/${encodeURIComponent(id)}`, serverNow() - DAY, window.innerWidth * 0.66),
           latest: latestRequests(id), panels: panels || panelsRequest(id) };
}

export function mountLive(panel, tiles, ctx, openedAt, prefetched) {
  const id = ctx.id;
  const base = `/patients/${encodeURIComponent(id)}`;
  let windowMs = DAY;
  let forecast = null, overview = null, latest = {}, news2 = null, twin = null;
  let panels = null;  // the API's answer
  let destroyed = false;
  let pollTimer = null;
  const unsubscribers = [];
  const state = {};
  for (const metric of Object.keys(STREAMS)) state[metric] = { x: [], y: [] };
  const mounted = [];  // panel handles: {draw(range)?, load?, destroy}
  let cgm = null, vitals = null;

  const shown = (key) => Boolean(panels && panels.panels.some((p) => p.key === key && p.shown));
  const gap = (metric) => state[metric].gap || STREAMS[metric];
  const pointOf = (s) => (s ? { x: Date.parse(s.time), y: Number(s.value) } : null);

  /** The newest glucose reading: from events (ahead of the overview), the overview, or the reading the
   *  forecast was issued from (a forecast event can arrive before its reading's). Tile and captions. */
  function glucoseNewest() {
    const g = overview && overview.glucose, gl = latest.glucose;
    let newest = gl && (!g || Date.parse(gl.time) > Date.parse(g.time)) ? gl : g || null;
    const f = forecast && forecast.last_reading_mg_dl !== null && forecast.last_reading_mg_dl !== undefined
      ? { time: forecast.issued_at, value: forecast.last_reading_mg_dl } : null;
    if (f && (!newest || Date.parse(f.time) > Date.parse(newest.time))) newest = f;
    return newest;
  }
  /** The forecast speaks beside the tile only while it was issued from the reading the tile shows
   *  (``issued_at`` is the data time of the last reading it folded in, vocab/forecast.py); otherwise the tile
   *  would say "92" beside "CGM 87 mg/dL, falling ...". */
  function forecastIsCurrent() {
    const newest = glucoseNewest();
    return Boolean(forecast) && (!newest || Date.parse(forecast.issued_at) >= Date.parse(newest.time));
  }
  /** The value the tile shows and every caption calls "latest" (one source, #15.5). */
  const latestPoint = (metric) => (metric === "glucose" ? pointOf(glucoseNewest()) : pointOf(latest[metric]));

  // --- layout -------------------------------------------------------------------------------------------
  const rangeGroup = el("div", { class: "segmented", role: "group", "aria-label": "Time window" });
  for (const [label, ms] of RANGES) {
    rangeGroup.append(el("button", { type: "button", "aria-pressed": ms === windowMs ? "true" : "false",
      dataset: { ms: String(ms) }, on: { click: () => setWindow(ms) } }, label));
  }
  const status = el("p", { class: "muted live-note", "aria-live": "polite" });
  const body = el("div", { class: "live-panels" }, el("p", { class: "muted" }, "Loading…"));
  const alertsBox = el("div", { class: "alerts-box" });
  const side = el("aside", { class: "alerts-panel", "aria-label": "Alerts" }, alertsBox);
  clear(panel, el("div", { class: "live-grid" },
    el("div", { class: "live-charts" }, el("div", { class: "live-toolbar" }, rangeGroup, status), body), side));

  function layout() {
    for (const m of mounted.splice(0)) m.destroy();
    cgm = vitals = null;
    const sections = [];
    for (const p of panels.panels.filter((x) => x.shown)) {
      const section = el("section", { class: "pt-panel", id: `ppanel-${p.key}`, "aria-labelledby": `ppanel-${p.key}-title`, dataset: { key: p.key } },
        el("h2", { id: `ppanel-${p.key}-title` }, p.title,
           el("span", { class: "why", title: p.reasons.join("; ") }, ` · ${p.reasons.map(reasonText).join(", ")}`)));
      sections.push(section);
      if (p.key === "cgm") {
        cgm = mountCgmTrace(section, ctx, { state, gap, latestPoint, forecast: () => forecast, twin: () => twin, timeZone: panels.time_zone, timeZoneSource: panels.time_zone_source });
        mounted.push(cgm);
      } else if (p.key === "vitals") {
        vitals = mountVitals(section, ctx, { state, latestPoint, gap });
        mounted.push(vitals);
      } else if (p.series.some((s) => s.source === "record")) {
        const handle = mountRecordPanel(section, ctx, p);
        mounted.push(handle);
        handle.load().catch((error) => section.append(el("p", { class: "error" }, errorText(error))));
      }
    }
    const hidden = panels.panels.filter((x) => !x.shown);
    const note = hidden.length ? el("p", { class: "muted hidden-panels", id: "hidden-panels" },
      `Not shown (no data yet): ${hidden.map((p) => p.title).join(", ")}.`) : null;
    clear(body, sections.length ? sections : el("p", { class: "muted", id: "no-panels" },
      "Nothing in this patient's problems, medications or data calls for a live panel; the record is in the Record tab."), note);
    panel.dataset.panels = panels.panels.filter((x) => x.shown).map((x) => x.key).join(" ");
    // the time window moves the device panels only; a page of lab panels (all dates) does not offer it
    rangeGroup.hidden = !(shown("cgm") || shown("vitals"));
  }

  function reasonText(r) {
    const [, ...rest] = r.split(": ");  // "problem: X", "medication: insulin", or "device data" / "record data"
    return rest.length ? shortName(null, rest.join(": ")) : r;
  }

  function range() {
    let end = serverNow();
    for (const metric of Object.keys(STREAMS)) {
      const xs = state[metric].x;
      if (xs.length) end = Math.max(end, xs[xs.length - 1]);
    }
    return [end - windowMs, end];
  }

  function drawAll() {
    const r = range();
    for (const m of mounted) if (m.draw) m.draw(r, windowMs);
  }

  // --- tiles --------------------------------------------------------------------------------------------
  function tile(key, label, value, unit, sub, cls = "") {
    return el("div", { class: `tile ${cls}`.trim(), id: `tile-${key}` },
      el("h3", label), el("p", { class: "value" }, value, unit ? el("span", { class: "unit" }, ` ${unit}`) : null),
      sub ? el("p", { class: "sub" }, sub) : null);
  }

  function forecastText() {
    if (!forecast) return null;
    if (!forecastIsCurrent()) {  // a newer reading than the forecast's: say so rather than quote the older one
      return el("span", { class: "forecast-line pending", id: "forecast-pending", dataset: { issuedAt: forecast.issued_at } },
        `Forecast updating for this reading (the last one was issued from the reading at ${clock(forecast.issued_at)})`);
    }
    // the one sentence the alerts use too: measured value and trend, then the forecast (vocab/forecast.py:
    // GlucoseForecast.summary); never rebuilt here from its numbers
    return forecast.summary ? el("span", { class: "forecast-line" },
      el("span", { class: "fc", id: "forecast-30", dataset: { issuedAt: forecast.issued_at } }, forecast.summary)) : null;
  }

  function glucoseTile() {
    const g = overview && overview.glucose;
    const newest = glucoseNewest();
    const value = newest ? newest.value : null;
    return tile("glucose", metricLabel("glucose"), value === null ? "—" : el("span", { id: "glucose-now" }, num(value)),
      value === null ? null : displayUnit("glucose"),
      [g ? trendNode(g.trend, g.trend_mg_dl_per_min) : null, newest ? ` ${ago(newest.time)}` : " no readings",
       g && g.stale ? el("span", { class: "stale" }, " · no recent reading") : null, el("br"), forecastText()], `glucose-tile ${glucoseClass(value)}`);
  }

  function news2Tile() {
    const n = news2 || (overview && overview.news2);
    const drivers = n && n.sub_scores ? n.sub_scores.filter((x) => x.score > 0).map((x) => `${x.label} ${x.score}`) : [];
    // the current score of the newest observation set (an alert shows its own score and time, labelled)
    const node = tile("news2", "NEWS2 now (latest set)", n ? news2Badge(n) : "—", null,
      n ? [el("span", { class: "news2-label" }, news2Label(n.band || n.risk)),
           n.complete === false || (n.missing && n.missing.length) ? " · incomplete set (a lower bound)" : "",
           n.time || n.at ? el("span", { class: "news2-at" }, ` · at ${clock(n.time || n.at)}, ${ago(n.time || n.at)}`) : "",
           drivers.length ? el("span", { class: "drivers" }, el("br"), drivers.join(", ")) : null]
        : "no vital signs");
    if (n && n.response) node.title = `${n.response}${n.monitoring ? ` Monitoring: ${n.monitoring}.` : ""}`;
    return node;
  }

  /** How old a lab result is, in the unit people say: "3 d ago", "5 months ago", "2 years ago". */
  function labAge(t) {
    const days = (serverNow() - Date.parse(t)) / DAY;
    if (days < 60) return ago(t);
    return days < 730 ? `${Math.round(days / 30.44)} months ago` : `${Math.round(days / 365.25)} years ago`;
  }

  /** A tile per quantity chart (panel.charts): the chart's "latest" (the newest over every code), in the
   *  chart's unit, saying whether it is reported or calculated (and from which creatinine), its category
   *  (KDIGO G) and its date (a lab result is dated, not "554 d ago" alone). None without a value: the reason it is not callable. */
  function quantityTiles(p) {
    return p.charts.map((c) => {
      const bad = c.not_callable.length ? c.not_callable[c.not_callable.length - 1] : null;
      if (!c.latest) {
        return bad ? tile(`${p.key}-${c.key}`, c.label, "—", null, `not callable: ${bad.reason}`) : null;
      }
      const l = c.latest;
      const calculated = c.calculated_by.length > 0;  // a value that may be calculated says which it is
      const sub = [calculated ? el("span", { class: `kind kind-${l.kind}`, title: `LOINC ${l.code}` }, kindText(c, l)) : null,
        l.kind === "calculated" ? [" ", el("span", { class: "basis", title: l.basis },
          `from creatinine ${valueText(l.original_value)} ${unitText(l.original_unit)}`)] : "", calculated ? el("br") : null,
        c.category ? el("span", { class: "category", title: c.category.source }, `${c.category.label} · `) : null,
        el("span", { class: "when", title: `LOINC ${l.code}` }, `${day(l.time)} (${labAge(l.time)})`),
        bad && Date.parse(bad.time) > Date.parse(l.time) ? el("span", { class: "not-callable" }, ` · newer creatinine not callable: ${bad.reason}`) : null];
      return tile(`${p.key}-${c.key}`, c.label, valueText(l.value), unitText(c.unit), sub, `kind-${l.kind}`);
    }).filter(Boolean);
  }

  function recordTiles() {
    const out = [];
    for (const p of panels ? panels.panels.filter((x) => x.shown) : []) {
      if (p.charts && p.charts.length) { out.push(...quantityTiles(p)); continue; }
      // a panel without quantity charts (INR): its first quantity with data, newest over its codes
      const withData = p.series.filter((x) => x.source === "record" && x.has_data);
      if (!withData.length) continue;
      const measured = [...(ctx.summary.summary.labs || []), ...(ctx.summary.summary.vitals || [])];
      const candidates = withData.filter((x) => x.label === withData[0].label)
        .map((x) => measured.find((m) => m.code === x.name)).filter((m) => m && m.value !== null && m.value !== undefined);
      if (!candidates.length) continue;
      const m = candidates.reduce((a, b) => (Date.parse(b.time || 0) > Date.parse(a.time || 0) ? b : a));
      const s = withData.find((x) => x.name === m.code);
      const inRange = p.target ? (m.value >= p.target[0] && m.value <= p.target[1]) : null;
      out.push(tile(`${p.key}`, s.label, valueText(m.value), unitText(m.unit),
        [m.time ? ago(m.time) : "", p.target ? ` · ${inRange ? "in" : "outside"} ${p.target_label}` : ""], inRange === false ? "warn" : ""));
    }
    return out;
  }

  function renderTiles() {
    const v = (metric, digits = 0) => (latest[metric] ? num(latest[metric].value, digits) : "—");
    const when = (metric) => (latest[metric] ? ago(latest[metric].time) : "no readings");
    const has = (metric) => Boolean(latest[metric]);
    clear(tiles, el("h2", { class: "visually-hidden" }, "Latest state"),
      shown("cgm") || glucoseNewest() ? glucoseTile() : null,
      shown("vitals") || news2 ? news2Tile() : null,
      has("heart_rate") ? tile("hr", metricLabel("heart_rate"), v("heart_rate"), displayUnit("heart_rate"), when("heart_rate")) : null,
      has("systolic_bp") ? tile("bp", "Blood pressure", `${v("systolic_bp")}/${v("diastolic_bp")}`, displayUnit("systolic_bp"), when("systolic_bp")) : null,
      has("spo2") ? tile("spo2", metricLabel("spo2"), v("spo2"), displayUnit("spo2"), when("spo2")) : null,
      has("respiratory_rate") ? tile("rr", metricLabel("respiratory_rate"), v("respiratory_rate"), displayUnit("respiratory_rate"), when("respiratory_rate")) : null,
      has("body_temperature") ? tile("temp", metricLabel("body_temperature"), v("body_temperature", 1), displayUnit("body_temperature"), when("body_temperature")) : null,
      ...recordTiles());
    if (cgm) cgm.renderTwin();
  }

  // --- loading ------------------------------------------------------------------------------------------
  async function loadSeries(requested) {
    const [x0] = range();
    const results = await (requested || seriesRequests(base, Math.min(x0, serverNow() - windowMs), panel.clientWidth * 0.7 || 900));
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
    takeForecast(fc && fc.horizons_min ? fc : fc && fc.forecast ? fc.forecast : null);
    news2 = nw && (nw.aggregate !== undefined || nw.score !== undefined) ? normaliseNews2(nw) : null;
  }

  /** Keep ``f`` unless the page holds a newer forecast (a request answered after a newer event). */
  function takeForecast(f) {
    if (f && forecast && Date.parse(f.issued_at) < Date.parse(forecast.issued_at)) return false;
    if (f) forecast = f;
    return Boolean(f);
  }

  async function loadPanels(requested) {
    const answer = await (requested || panelsRequest(id));
    const before = panels ? panels.panels.filter((p) => p.shown).map((p) => p.key).join() : null;
    panels = answer;
    const after = panels.panels.filter((p) => p.shown).map((p) => p.key).join();
    if (before !== after) layout();
    return before !== after;
  }

  async function loadPanelData() {
    const r = range();
    await Promise.all([vitals ? vitals.load(windowMs / HOUR) : null, cgm ? cgm.load(r) : null]);
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
    await loadPanelData();
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
    const relaid = await loadPanels().catch(() => false);
    if (relaid) await loadPanelData();
    else if (vitals) await vitals.load(windowMs / HOUR);
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
      if (data.horizons_min && takeForecast(data)) { renderTiles(); drawAll(); }
      refreshDerived();  // the twin's status too, so its estimate and the forecast's never disagree on screen
    } else if (event.type === "alert") {
      if (cgm) cgm.load(range()).then(() => drawAll()).catch(() => {});
      refreshDerived();
    }
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
      await Promise.all([loadSeries(prefetched && prefetched.series), loadLatest(prefetched && prefetched.latest),
                         loadPanels(prefetched && prefetched.panels)]);
      if (destroyed) return;
      await loadPanelData();
      if (destroyed) return;
      renderTiles();
      drawAll();
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      await alerts.ready;
      const elapsed = Math.round(performance.now() - (openedAt ?? performance.now()));
      window.medtwinTimings = { ...(window.medtwinTimings || {}), patient_open_ms: elapsed,
        glucose_points: state.glucose.x.length, heart_rate_points: state.heart_rate.x.length };
      panel.dataset.ready = "true";
      status.textContent = `${rangeGroup.hidden ? "Record results, all dates" : "Showing 24 h"} · opened in ${elapsed} ms`;
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
      for (const m of mounted) m.destroy();
    },
  };
}
