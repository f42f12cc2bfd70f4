// A small canvas chart for time series: lines, points and uncertainty bands, with reference zones and
// lines. Tens of thousands of points draw in a few milliseconds: a line keeps, per pixel column, its first,
// lowest, highest and last value (so every peak stays visible). Keyboard: focus the chart, then the arrow
// keys move a cursor over the readings (Shift: 12 at a time, Home/End, Escape); the values under the cursor
// are written as text below the chart.
const MINUTE = 60_000, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const TIME_STEPS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR,
  3 * HOUR, 4 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY];
const INK = "#1d2430", MUTED = "#4a5568", GRID = "#e3e8ef", AXIS = "#8a94a3";
const pad2 = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

export function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * magnitude >= raw) return m * magnitude;
  return 10 * magnitude;
}

/** Index of the first element >= value in a sorted array. */
export function lowerBound(xs, value) {
  let lo = 0, hi = xs.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid] < value) lo = mid + 1; else hi = mid; }
  return lo;
}

/** Index of the first element > value in a sorted array (so ``upperBound(xs, x) - 1`` is the last one <= x).
 *  Why not ``lowerBound(xs, x + 1e-9)``: on millisecond timestamps (~1.7e12, spacing 2.4e-4) adding 1e-9
 *  changes nothing, so the reading exactly at x was skipped and the one before it called "latest" (#15.5). */
export function upperBound(xs, value) {
  let lo = 0, hi = xs.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (xs[mid] <= value) lo = mid + 1; else hi = mid; }
  return lo;
}

function nearest(xs, value) {
  if (!xs.length) return -1;
  const i = lowerBound(xs, value);
  if (i <= 0) return 0;
  if (i >= xs.length) return xs.length - 1;
  return value - xs[i - 1] <= xs[i] - value ? i - 1 : i;
}

// Calendar steps for spans of months and years: [months per tick, label kind].
const MONTH_STEPS = [[1, "month"], [2, "month"], [3, "month"], [6, "month"], [12, "year"], [24, "year"], [60, "year"],
  [120, "year"]];
const YEAR = 365.25 * DAY;

function timeLabel(t, step, withYear) {
  const d = new Date(t);
  if (step === "year") return String(d.getFullYear());
  if (step === "month") return d.getMonth() === 0 || withYear ? `${MONTHS[d.getMonth()]} ${d.getFullYear()}` : MONTHS[d.getMonth()];
  const midnight = d.getHours() === 0 && d.getMinutes() === 0;
  if (step >= DAY || midnight) return `${d.getDate()} ${MONTHS[d.getMonth()]}${withYear ? ` ${d.getFullYear()}` : ""}`;
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** "7 Jul 14:05"; with ``withYear`` "7 Jul 2025 14:05" (a chart whose span crosses a year says which). */
export function formatTime(t, withYear = false) {
  const d = new Date(t);
  return `${d.getDate()} ${MONTHS[d.getMonth()]}${withYear ? ` ${d.getFullYear()}` : ""} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** Ticks on calendar months (1, 2, 3, 6) or years (1, 2, 5, 10) for spans the fixed steps cannot label. */
function calendarTicks(x0, x1, count) {
  const months = (x1 - x0) / (YEAR / 12);
  const [step, kind] = MONTH_STEPS.find(([m]) => months / m <= count) || [Math.ceil(months / count / 12) * 12, "year"];
  const d0 = new Date(x0);
  let index = Math.ceil((d0.getFullYear() * 12 + d0.getMonth()) / step) * step;  // months since year 0
  const ticks = [];
  for (; ticks.length < 200; index += step) {
    const t = new Date(Math.floor(index / 12), index % 12, 1).getTime();
    if (t > x1) break;
    if (t >= x0) ticks.push(t);
  }
  return { ticks, kind };
}

const charts = new Set();

/** Stop charts whose element has left the page (their resize observers would keep them alive). */
export function sweepCharts() {
  for (const chart of charts) if (!chart.host.isConnected) chart.destroy();
}

export class Chart {
  /**
   * @param host element to fill (canvas + readout + legend)
   * @param options {label, unit, height, x: "time"|"number", xFormat(x), xTicks(x0,x1)->[x], yMin, yMax,
   *                 yFormat(y), zones: [{from, to, fill, label}], rules: [{y, color, dash, label}], digits,
   *                 latest() -> {x, y, note} | null: the value the caption calls "latest" (the tile's, so both
   *                 agree; ``note`` said after it, e.g. "calculated"), name: the caption's subject (default: the
   *                 primary series' label), everyPoint: the cursor stops at every series' points (not only the
   *                 primary's: a chart of reported and calculated values), minSpan: the least x span drawn
   *                 (a single lab result is not drawn over two hours)}
   */
  constructor(host, options = {}) {
    this.host = host;
    this.o = { height: 200, x: "time", digits: 0, zones: [], rules: [], ...options };
    this.series = [];
    this.marks = [];  // vertical lines: [{x, label, color, dash}]
    this.range = null;
    this.cursor = null;
    this.empty = options.empty || "No readings in this period";
    host.classList.add("chart");
    this.canvas = document.createElement("canvas");
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", this.o.label || "chart");
    this.canvas.height = this.o.height;
    this.readout = document.createElement("p");
    this.readout.className = "readout";
    this.readout.setAttribute("aria-live", "polite");
    this.legend = document.createElement("ul");
    this.legend.className = "legend";
    this.legend.setAttribute("aria-label", `${this.o.label || "chart"}: legend`);
    host.replaceChildren(this.canvas, this.legend, this.readout);
    this.canvas.addEventListener("mousemove", (e) => this.pointer(e));
    this.canvas.addEventListener("mouseleave", () => this.setCursor(null));
    this.canvas.addEventListener("keydown", (e) => this.key(e));
    this.canvas.addEventListener("blur", () => this.setCursor(null));
    this.resizer = new ResizeObserver(() => this.update());
    this.resizer.observe(host);
    charts.add(this);
    this.pending = false;
    this.drawCount = 0;
  }

  destroy() { this.resizer.disconnect(); this.host.replaceChildren(); charts.delete(this); }

  /** series: [{id, label, type: "line"|"points"|"band", x: [], y: [], y2: [] (band top), color, fill, width,
   *  shape: "circle"|"triangle"|"diamond" (points), radius,
   *  dash, gap (x distance that breaks a line), primary, legend (default true), describe(i) -> text}] */
  setSeries(series) {
    this.series = series.filter(Boolean);
    this.stops = this.o.everyPoint
      ? [...new Set(this.series.filter((s) => s.type !== "band").flatMap((s) => s.x))].sort((a, b) => a - b) : null;
    this.renderLegend();
    this.update();
  }

  get(id) { return this.series.find((s) => s.id === id); }

  /** Fixed x range [x0, x1], or null to fit the data. */
  setRange(range) { this.range = range; this.update(); }

  update() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  renderLegend() {
    this.legend.replaceChildren();
    for (const s of this.series) {
      if (s.legend === false || !s.label) continue;
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = `swatch swatch-${s.type || "line"}`;
      swatch.style.backgroundColor = s.type === "band" ? s.fill || s.color : s.color;
      if (s.type === "band") swatch.style.borderColor = s.color;
      if (s.dash) {  // drawn dashed, as the line is (a calculated series beside a measured one)
        swatch.classList.add("dashed");
        swatch.style.backgroundColor = "transparent";
        swatch.style.backgroundImage = `repeating-linear-gradient(90deg, ${s.color} 0 5px, transparent 5px 8px)`;
      }
      item.append(swatch);
      if (s.shape === "diamond" && s.type !== "points") {
        const marker = document.createElement("span");
        marker.className = "marker";
        marker.setAttribute("aria-hidden", "true");
        marker.style.color = s.color;
        marker.textContent = "\u25c6 ";
        item.append(marker);
      }
      item.append(document.createTextNode(s.label));
      this.legend.append(item);
    }
  }

  xExtent() {
    if (this.range) return this.range;
    let lo = Infinity, hi = -Infinity;
    for (const s of this.series) {
      if (!s.x.length) continue;
      lo = Math.min(lo, s.x[0]);
      hi = Math.max(hi, s.x[s.x.length - 1]);
    }
    if (!Number.isFinite(lo)) return null;
    if (lo === hi) { lo -= this.o.x === "time" ? HOUR : 1; hi += this.o.x === "time" ? HOUR : 1; }
    if (this.o.minSpan && hi - lo < this.o.minSpan) { const mid = (lo + hi) / 2; lo = mid - this.o.minSpan / 2; hi = mid + this.o.minSpan / 2; }
    const pad = (hi - lo) * 0.015;  // a point at either end is drawn whole, not cut by the plot's edge
    return [lo - pad, hi + pad];
  }

  yExtent(x0, x1) {
    let lo = Infinity, hi = -Infinity;
    for (const s of this.series) {
      const i0 = Math.max(0, lowerBound(s.x, x0) - 1), i1 = Math.min(s.x.length, lowerBound(s.x, x1) + 1);
      for (const arr of s.type === "band" ? [s.y, s.y2] : [s.y]) {
        for (let i = i0; i < i1; i++) {
          const v = arr[i];
          if (v === null || v === undefined || Number.isNaN(v)) continue;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
      }
    }
    if (this.o.yMin !== undefined) lo = Math.min(lo, this.o.yMin);
    if (this.o.yMax !== undefined) hi = Math.max(hi, this.o.yMax);
    if (!Number.isFinite(lo)) return [0, 1];
    if (lo === hi) { lo -= 1; hi += 1; }
    const step = niceStep(hi - lo, 5);
    return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
  }

  xTicks(x0, x1, width) {
    if (this.o.xTicks) return this.o.xTicks(x0, x1, width);
    const count = Math.max(2, Math.floor(width / 90));
    if (this.o.x !== "time") {
      const step = niceStep(x1 - x0, count);
      const ticks = [];
      for (let t = Math.ceil(x0 / step) * step; t <= x1 + 1e-9; t += step) ticks.push(t);
      return ticks;
    }
    this.withYear = new Date(x0).getFullYear() !== new Date(x1).getFullYear() || x1 - x0 > 300 * DAY;
    const step = TIME_STEPS.find((s) => (x1 - x0) / s <= count);
    if (!step) {  // months and years: calendar ticks, labelled with the year (#15.5)
      const { ticks, kind } = calendarTicks(x0, x1, count);
      this.timeStep = kind;
      return ticks;
    }
    const offset = new Date(x0).getTimezoneOffset() * MINUTE;
    const ticks = [];
    for (let t = Math.ceil((x0 - offset) / step) * step + offset; t <= x1; t += step) ticks.push(t);
    this.timeStep = step;
    return ticks;
  }

  formatX(x) {
    if (this.o.xFormat) return this.o.xFormat(x);
    return this.o.x === "time" ? formatTime(x, this.withYear) : String(Math.round(x * 100) / 100);
  }

  formatY(y) {
    if (this.o.yFormat) return this.o.yFormat(y);
    return y === null || y === undefined ? "—" : Number(y).toFixed(this.o.digits);
  }

  draw() {
    const width = Math.max(200, Math.floor(this.host.clientWidth || 600));
    const height = this.o.height;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const left = 44, top = 8, bottom = 22;
    const right = this.o.rules.some((r) => r.label) ? 34 : 10;  // rule labels (e.g. KDIGO G3a) in the margin
    const plotW = width - left - right, plotH = height - top - bottom;
    this.box = { left, right, top, bottom, plotW, plotH, width, height };
    ctx.font = "12px system-ui, sans-serif";
    const xr = this.xExtent();
    this.drawCount += 1;
    if (!xr) {
      this.scales = null;
      ctx.fillStyle = MUTED;
      ctx.textAlign = "center";
      ctx.fillText(this.empty, width / 2, height / 2);
      this.describe(null);
      return;
    }
    const [x0, x1] = xr;
    const [y0, y1] = this.yExtent(x0, x1);
    const X = (x) => left + ((x - x0) / (x1 - x0)) * plotW;
    const Y = (y) => top + (1 - (y - y0) / (y1 - y0)) * plotH;
    this.scales = { x0, x1, y0, y1, X, Y };

    // zones (e.g. the target range) and grid
    for (const z of this.o.zones) {
      const a = Y(Math.min(y1, z.to)), b = Y(Math.max(y0, z.from));
      if (b > a) { ctx.fillStyle = z.fill; ctx.fillRect(left, a, plotW, b - a); }
    }
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.fillStyle = MUTED;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yStep = niceStep(y1 - y0, Math.max(2, Math.floor(plotH / 40)));
    for (let v = Math.ceil(y0 / yStep) * yStep; v <= y1 + 1e-9; v += yStep) {
      const py = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, py); ctx.lineTo(left + plotW, py); ctx.stroke();
      ctx.fillText(String(Math.round(v * 100) / 100), left - 6, py);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const tickLabels = [];
    for (const t of this.xTicks(x0, x1, plotW)) {
      const px = Math.round(X(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + plotH); ctx.stroke();
      const label = this.o.xTickFormat ? this.o.xTickFormat(t) : this.o.x === "time" ? timeLabel(t, this.timeStep, this.withYear)
        : String(Math.round(t * 100) / 100);
      ctx.fillText(label, Math.min(Math.max(px, left + 14), left + plotW - 14), top + plotH + 5);
      tickLabels.push(label);
    }
    this.canvas.dataset.xTicks = tickLabels.join("|");  // what the axis reads, for a reader of the page's text
    ctx.strokeStyle = AXIS;
    ctx.beginPath(); ctx.moveTo(left + 0.5, top); ctx.lineTo(left + 0.5, top + plotH); ctx.lineTo(left + plotW, top + plotH + 0.5); ctx.stroke();
    for (const r of this.o.rules) {
      if (r.y < y0 || r.y > y1) continue;
      ctx.save();
      ctx.strokeStyle = r.color || MUTED;
      ctx.setLineDash(r.dash || [4, 4]);
      const py = Math.round(Y(r.y)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, py); ctx.lineTo(left + plotW, py); ctx.stroke();
      if (r.label) {  // e.g. a KDIGO GFR category above its lower limit
        ctx.fillStyle = r.color || MUTED;
        ctx.textAlign = "left";
        ctx.textBaseline = "bottom";
        ctx.fillText(r.label, left + plotW + 4, py + 1);  // beside the plot, above its lower limit
      }
      ctx.restore();
    }

    for (const m of this.marks || []) {
      if (m.x < x0 || m.x > x1) continue;
      const px = Math.round(X(m.x)) + 0.5;
      ctx.save();
      ctx.strokeStyle = m.color || MUTED;
      ctx.setLineDash(m.dash || [3, 3]);
      ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + plotH); ctx.stroke();
      if (m.label) {
        ctx.fillStyle = m.color || MUTED;
        ctx.textAlign = px > left + plotW - 40 ? "right" : "left";
        ctx.textBaseline = "top";
        ctx.fillText(m.label, px + (ctx.textAlign === "left" ? 4 : -4), top + 2);
      }
      ctx.restore();
    }
    ctx.save();
    ctx.beginPath(); ctx.rect(left, top - 2, plotW, plotH + 4); ctx.clip();
    let visible = 0;
    for (const s of this.series) {
      const i0 = Math.max(0, lowerBound(s.x, x0) - 1), i1 = Math.min(s.x.length, lowerBound(s.x, x1) + 1);
      visible += Math.max(0, i1 - i0);
      if (i1 <= i0) continue;
      if (s.type === "band") this.band(ctx, s, i0, i1, X, Y);
      else if (s.type === "points") this.points(ctx, s, i0, i1, X, Y);
      else this.line(ctx, s, i0, i1, X, Y, plotW);
    }
    ctx.restore();
    if (!visible) {
      ctx.fillStyle = MUTED;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(this.empty, left + plotW / 2, top + plotH / 2);
    }
    if (this.cursor !== null) this.drawCursor(ctx);
    this.describe([x0, x1]);
  }

  line(ctx, s, i0, i1, X, Y, plotW) {
    const xs = s.x, ys = s.y, gap = s.gap || Infinity;
    ctx.save();
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 1.6;
    ctx.lineJoin = "round";
    if (s.dash) ctx.setLineDash(s.dash);
    ctx.beginPath();
    let col = null, first = 0, lo = 0, hi = 0, last = 0, pen = false, prevX = null, drawn = 0;
    let run = 0, runStart = null;
    const lonely = [];  // segments of a single column (a reading with no neighbour within the gap): a dot
    const flush = () => {
      if (col === null) return;
      if (!pen) { ctx.moveTo(col, first); pen = true; runStart = [col, first]; } else ctx.lineTo(col, first);
      if (lo !== hi) { ctx.lineTo(col, lo); ctx.lineTo(col, hi); }
      ctx.lineTo(col, last);
      run += 1;
      col = null;
    };
    const breakLine = () => {
      flush();
      if (pen && run === 1 && runStart) lonely.push(runStart);
      pen = false; run = 0; runStart = null;
    };
    for (let i = i0; i < i1; i++) {
      const y = ys[i];
      if (y === null || y === undefined || Number.isNaN(y)) { breakLine(); prevX = null; continue; }
      const x = xs[i];
      if (prevX !== null && x - prevX > gap) breakLine();
      const px = Math.round(X(x) * 2) / 2, py = Y(y);
      if (px !== col) { flush(); col = px; first = lo = hi = last = py; }
      else { if (py < lo) lo = py; if (py > hi) hi = py; last = py; }
      prevX = x;
      drawn += 1;
    }
    breakLine();
    ctx.stroke();
    if (!s.dots) {
      ctx.fillStyle = s.color;
      for (const [px, py] of lonely) { ctx.beginPath(); ctx.arc(px, py, 2.5, 0, 2 * Math.PI); ctx.fill(); }
    }
    // dots where readings are sparse enough to tell apart (e.g. CGM over a day)
    if (s.dots && drawn > 0 && plotW / drawn >= 3) {
      ctx.fillStyle = s.color;
      for (let i = i0; i < i1; i++) {
        const y = ys[i];
        if (y === null || y === undefined || Number.isNaN(y)) continue;
        const px = X(xs[i]), py = Y(y), r = s.dots;
        ctx.beginPath();
        if (s.shape === "diamond") { ctx.moveTo(px, py - r - 1); ctx.lineTo(px + r + 1, py); ctx.lineTo(px, py + r + 1); ctx.lineTo(px - r - 1, py); ctx.closePath(); }
        else ctx.arc(px, py, r, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    ctx.restore();
  }

  points(ctx, s, i0, i1, X, Y) {
    ctx.save();
    ctx.fillStyle = s.color;
    const r = s.radius || 2.5;
    let col = null, seen = new Set();
    for (let i = i0; i < i1; i++) {
      const y = s.y[i];
      if (y === null || y === undefined || Number.isNaN(y)) continue;
      const px = Math.round(X(s.x[i])), py = Math.round(Y(y));
      if (px !== col) { col = px; seen = new Set(); }
      if (seen.has(py)) continue;
      seen.add(py);
      ctx.beginPath();
      if (s.shape === "triangle") { ctx.moveTo(px, py - r); ctx.lineTo(px + r, py + r); ctx.lineTo(px - r, py + r); ctx.closePath(); }
      else if (s.shape === "diamond") { ctx.moveTo(px, py - r); ctx.lineTo(px + r, py); ctx.lineTo(px, py + r); ctx.lineTo(px - r, py); ctx.closePath(); }
      else ctx.arc(px, py, r, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.restore();
  }

  band(ctx, s, i0, i1, X, Y) {
    const cols = [];
    let col = null;
    for (let i = i0; i < i1; i++) {
      const a = s.y[i], b = s.y2[i];
      if (a === null || b === null || a === undefined || b === undefined) continue;
      const px = Math.round(X(s.x[i]));
      if (px !== col) { cols.push([px, Y(b), Y(a)]); col = px; }
      else { const c = cols[cols.length - 1]; c[1] = Math.min(c[1], Y(b)); c[2] = Math.max(c[2], Y(a)); }
    }
    if (!cols.length) return;
    ctx.save();
    ctx.fillStyle = s.fill || s.color;
    ctx.beginPath();
    ctx.moveTo(cols[0][0], cols[0][1]);
    for (const [px, top] of cols) ctx.lineTo(px, top);
    for (let k = cols.length - 1; k >= 0; k--) ctx.lineTo(cols[k][0], cols[k][2]);
    ctx.closePath();
    ctx.fill();
    ctx.restore();
  }

  primary() { return this.series.find((s) => s.primary && s.x.length) || this.series.find((s) => s.x.length); }

  /** Where the cursor may stop: every series' points (``everyPoint``), else the primary series'. */
  stopsOf(p) { return this.stops && this.stops.length ? this.stops : p.x; }

  pointer(event) {
    if (!this.scales) return;
    const rect = this.canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const { x0, x1 } = this.scales;
    const x = x0 + ((px - this.box.left) / this.box.plotW) * (x1 - x0);
    const p = this.primary();
    if (!p) return;
    const xs = this.stopsOf(p);
    this.setCursor(xs[nearest(xs, x)]);
  }

  key(event) {
    const p = this.primary();
    if (!p || !this.scales) return;
    const { x0, x1 } = this.scales;
    const xs = this.stopsOf(p);
    const lo = lowerBound(xs, x0), hi = Math.max(lo, upperBound(xs, x1) - 1);
    let i = this.cursor === null ? hi : nearest(xs, this.cursor);
    const step = event.shiftKey ? 12 : 1;
    if (event.key === "ArrowLeft") i -= step;
    else if (event.key === "ArrowRight") i += step;
    else if (event.key === "Home") i = lo;
    else if (event.key === "End") i = hi;
    else if (event.key === "Escape") { this.setCursor(null); return; }
    else return;
    event.preventDefault();
    this.setCursor(xs[Math.min(hi, Math.max(lo, i))]);
  }

  setCursor(x) {
    this.cursor = x;
    this.update();
  }

  drawCursor(ctx) {
    const { X, Y, x0, x1 } = this.scales;
    if (this.cursor < x0 || this.cursor > x1) return;
    const px = Math.round(X(this.cursor)) + 0.5;
    ctx.save();
    ctx.strokeStyle = INK;
    ctx.setLineDash([2, 3]);
    ctx.beginPath(); ctx.moveTo(px, this.box.top); ctx.lineTo(px, this.box.top + this.box.plotH); ctx.stroke();
    ctx.setLineDash([]);
    for (const s of this.series) {
      if (s.type === "band" || !s.x.length) continue;
      const i = nearest(s.x, this.cursor);
      if (Math.abs(s.x[i] - this.cursor) > (s.gap || Infinity) || s.y[i] === null) continue;
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(X(s.x[i]), Y(s.y[i]), 4, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
    ctx.restore();
  }

  /** The text under the chart: the values at the cursor, or a summary of the latest reading. */
  describe(range) {
    const p = this.primary();
    if (!range || !p) { this.readout.textContent = this.empty; return; }
    if (this.cursor === null) {
      // "latest": the owner's value when it gives one (the tile's: one source, #15.5), else the newest point
      const own = this.o.latest ? this.o.latest() : null;
      const i = upperBound(p.x, range[1]) - 1;
      const [lx, ly] = own ? [own.x, own.y] : i >= 0 && p.x[i] >= range[0] ? [p.x[i], p.y[i]] : [null, null];
      const note = own && own.note ? `, ${own.note},` : "";
      const latest = lx !== null ? `latest ${this.formatY(ly)} ${this.o.unit || ""}${note} at ${this.formatX(lx)}` : this.empty;
      this.readout.textContent = `${this.o.name || p.label || ""}: ${latest}`.trim();
      this.readout.dataset.latestX = lx === null ? "" : String(lx);
      this.readout.dataset.latestY = ly === null ? "" : String(ly);
      this.canvas.setAttribute("aria-label", `${this.o.label || "chart"}, ${this.formatX(range[0])} to ${this.formatX(range[1])}; ${latest}. Use the arrow keys to read values.`);
      return;
    }
    const parts = [this.formatX(this.cursor)];
    for (const s of this.series) {
      if (!s.x.length || s.cursor === false) continue;
      const i = nearest(s.x, this.cursor);
      if (Math.abs(s.x[i] - this.cursor) > (s.gap || (this.o.x === "time" ? 10 * MINUTE : Infinity))) continue;
      if (s.describe) { const text = s.describe(i); if (text) parts.push(text); continue; }
      if (s.type === "band") parts.push(`${s.label} ${this.formatY(s.y[i])}–${this.formatY(s.y2[i])}`);
      else parts.push(`${s.label} ${this.formatY(s.y[i])}${this.o.unit ? " " + this.o.unit : ""}`);
    }
    this.readout.textContent = parts.join(" · ");
  }
}
