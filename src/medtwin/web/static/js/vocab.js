// The one vocabulary (GET /api/v1/vocabulary): metric labels and display units, the consensus glucose
// thresholds and the alert rules' labels. Loaded once after sign-in (main.js awaits it before a view is
// drawn); nothing in the dashboard keeps its own copy. Before it has loaded (or if it could not be), names
// are shown as they are and no glucose zones are drawn: no made-up threshold.
import { call } from "./api.js";

let vocab = null;
let pending = null;

function index(doc) {
  const levels = new Map(doc.glucose.levels.map((lv) => [lv.name, lv]));
  return {
    doc,
    metrics: new Map(doc.metrics.map((m) => [m.name, m])),
    levels,
    alerts: new Map(doc.alert_rules.flatMap((r) => r.alerts.map((k) => [k.name, k]))),
    bands: new Map((doc.news2.risk_bands || []).map((b) => [b.name, b])),
    display: doc.display || { units: {}, names: {}, fallback_strip: "{}[]" },
  };
}

/** Load the vocabulary (once; later calls reuse it). Resolves to null if it cannot be read. */
export function loadVocabulary() {
  if (vocab) return Promise.resolve(vocab);
  if (!pending) {
    pending = call("/vocabulary").then((doc) => { vocab = index(doc); return vocab; })
      .catch((error) => { console.error("vocabulary not loaded", error); return null; })
      .finally(() => { pending = null; });
  }
  return pending;
}

export const metricLabel = (name) => vocab?.metrics.get(name)?.label ?? name;
export const displayUnit = (name) => vocab?.metrics.get(name)?.display_unit ?? "";
export const alertLabel = (rule) => vocab?.alerts.get(rule)?.label ?? rule;
export const alertDescription = (rule) => vocab?.alerts.get(rule)?.description ?? "";

/** A UCUM unit as people read it ("Cel" -> "°C", "{INR}" -> ""): the vocabulary's table, else the code
 *  without the characters the vocabulary's fallback strips (UCUM annotation braces and bracket markers). */
export function unitText(ucum) {
  if (!ucum) return "";
  const table = vocab?.display.units ?? {};
  if (Object.hasOwn(table, ucum)) return table[ucum];
  const strip = vocab?.display.fallback_strip ?? "{}[]";
  return [...ucum].filter((c) => !strip.includes(c)).join("").trim();
}

/** A measured value with the vocabulary's one rounding rule (display.value_rounding: one decimal below 10, none
 *  from 10 on; toFixed's half-up on the exact value), as the report prints it (vocab/display.py display_value). */
export function valueText(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const rule = vocab?.display.value_rounding;
  const v = Number(value);
  if (!rule) return String(v);  // before the vocabulary has loaded: as stored, no rule of our own
  const text = v.toFixed(Math.abs(v) < rule.small_below ? rule.small_digits : rule.digits);
  return /^-0(\.0+)?$/.test(text) ? text.slice(1) : text;
}

/** The short display name of a LOINC code ("6301-6" -> "INR"), else the record's display without a SNOMED CT
 *  semantic tag ("Atrial fibrillation (disorder)" -> "Atrial fibrillation"), else the code. */
export function shortName(code, display) {
  const named = code ? vocab?.display.names[code] : undefined;
  if (named !== undefined) return named;
  if (!display) return code ?? "";
  const m = /^(.+) \(([^()]+)\)\s*$/.exec(display);
  return m && (vocab?.display.semantic_tags ?? []).includes(m[2]) ? m[1] : display;
}

/** Tooltip keeping the codes: "INR in Platelet poor plasma by Coagulation assay · LOINC 6301-6 · UCUM {INR}". */
export function codeTitle(code, display, ucum, system = "LOINC") {
  return [display, code ? `${system} ${code}` : null, ucum ? `UCUM ${ucum}` : null].filter(Boolean).join(" · ");
}

/** A NEWS2 band of the one mapping (RCP 2017): {name, label, alert_severity, trigger}, or null. */
export const news2Band = (name) => vocab?.bands.get(name) ?? null;

/** A consensus glucose threshold in mg/dL ("hypo-l2", "hypo-l1", "hyper-l1", "hyper-l2"), or null. */
export const glucoseThreshold = (level) => vocab?.levels.get(level)?.threshold_mg_dl ?? null;

/** The thresholds as {vlow, low, high, vhigh} (mg/dL), or null before the vocabulary has loaded. */
export function glucoseLevels() {
  if (!vocab) return null;
  return { vlow: glucoseThreshold("hypo-l2"), low: glucoseThreshold("hypo-l1"),
           high: glucoseThreshold("hyper-l1"), vhigh: glucoseThreshold("hyper-l2") };
}

/** Chart options drawing the target range and the level lines of the glucose thresholds. */
export function glucoseZones() {
  const t = glucoseLevels();
  if (!t) return { zones: [], rules: [] };
  return { zones: [{ from: t.low, to: t.high, fill: "#e5f3e8" }],
           rules: [{ y: t.vlow, color: "#a61b1b" }, { y: t.low, color: "#b26a00" }, { y: t.high, color: "#b26a00" }] };
}

/** "crit" | "low" | "high" | "warn" | "" for a glucose value against the thresholds. */
export function glucoseClass(value) {
  const t = glucoseLevels();
  if (value === null || value === undefined || !t) return "";
  return value < t.vlow ? "crit" : value < t.low ? "low" : value > t.vhigh ? "high" : value > t.high ? "warn" : "";
}
