// Record tab: the twin summary (GET /patients/{id}) as cards, and a timeline of encounters, labs, problems,
// medications, immunisations and imaging (labs from GET /patients/{id}/observations, filtered to the lab
// codes the summary lists). A lab's history opens as a chart.
// Latest labs: the codes of one quantity (creatinine under 2160-0, 38483-4, 14682-9) are one row, as the kidney
// panel charts them: the newest reading over its codes, in the unit and under the code it was recorded with (the
// tooltip names them and the other codes' latest). The grouping is the vocabulary's `quantities`
// (model/panels.py QUANTITIES), never a copy here; nothing is converted here.
import { call, errorText } from "./api.js";
import { clear, day, el, isoDay } from "./dom.js";
import { Chart } from "./chart.js";
import { codeTitle, loadVocabulary, shortName, unitText, valueText } from "./vocab.js";

const KINDS = [["encounter", "Encounters"], ["lab", "Labs"], ["problem", "Problems"], ["medication", "Medications"],
               ["immunization", "Immunisations"], ["imaging", "Imaging"]];

function measure(m) {
  if (!m) return "—";
  const value = m.value !== null && m.value !== undefined ? valueText(m.value) : m.text;  // the report's rounding
  return `${value ?? "—"} ${unitText(m.unit)}`.trim();
}

/** A coded measurement's short name, with its full name and codes in the tooltip (they stay in exports). */
function nameNode(m, tag = "span", attrs = {}, system = "LOINC") {
  return el(tag, { ...attrs, class: `${attrs.class || ""} coded`.trim(), title: codeTitle(m.code, m.display, m.unit, system) },
            shortName(m.code, m.display));
}

const stamp = (m) => (m.time ? Date.parse(m.time) : -Infinity);

/** The latest labs as rows {lab, codes, others, label}: a quantity's codes (``quantities``: the vocabulary's) are
 *  one row holding the newest reading over them (``others``: the other codes' latest); other codes a row each. */
export function latestLabRows(labs, quantities) {
  const byCode = new Map((quantities || []).flatMap((q) => q.codes.map((c) => [c, q])));
  const rows = [];
  const grouped = new Map();
  for (const lab of labs) {
    const q = byCode.get(lab.code);
    const key = q ? `${q.panel}/${q.key}` : null;
    const row = key && grouped.get(key);
    if (!row) {
      const made = { lab, codes: q ? q.codes : [lab.code], others: [], label: q ? q.label : shortName(lab.code, lab.display) };
      rows.push(made);
      if (key) grouped.set(key, made);
    } else if (stamp(lab) > stamp(row.lab)) {
      row.others.push(row.lab);
      row.lab = lab;
    } else {
      row.others.push(lab);
    }
  }
  return rows;
}

/** The row's tooltip: the newest reading's name, code and unit; then each other code's latest as recorded. */
function rowTitle(row) {
  const own = codeTitle(row.lab.code, row.lab.display, row.lab.unit);
  if (!row.others.length) return own;
  const others = row.others.map((o) => `LOINC ${o.code} ${measure(o)} (${isoDay(o.time)})`).join("; ");
  return `${own} · newest of ${row.others.length + 1} codes; also recorded: ${others}`;
}

function card(title, rows, empty = "none recorded") {
  return el("section", { class: "card" }, el("h3", title),
    rows.length ? el("ul", rows) : el("p", { class: "muted" }, empty));
}

export async function mountRecord(panel, ctx) {
  const s = ctx.summary.summary;
  const quantities = (await loadVocabulary())?.doc.quantities || [];  // loaded once at sign-in: no new request
  const labCodes = new Set((s.labs || []).map((l) => l.code));
  const detail = el("div", { class: "lab-detail", id: "lab-detail" });
  let observations = [];
  let loaded = false;  // the observations below arrive after the cards: a row chosen before waits for them
  let chosen = null;
  let failed = null;  // why the observations could not be loaded

  /** The history of a row's codes in the unit of its latest reading; readings in another unit are not drawn on
   *  that axis (nothing is converted here) and are named under the chart. */
  function showLab(codes, label, latest) {
    chosen = [codes, label, latest];
    if (!loaded) {  // never "No values recorded" for a history that has not arrived yet
      clear(detail, el("h3", `${label}: history`),
            el("p", { class: "muted", role: "status" }, failed ? `History: ${failed}` : "Loading history…"));
      return;
    }
    const all = observations.filter((o) => codes.includes(o.code) && o.effective && o.value !== null)
      .sort((a, b) => Date.parse(a.effective) - Date.parse(b.effective));
    const drawnUnit = latest && latest.unit ? latest.unit : (all.length ? all[all.length - 1].unit : null);
    const points = all.filter((o) => o.unit === drawnUnit);
    const apart = all.filter((o) => o.unit !== drawnUnit);
    const host = el("div");
    const note = apart.length ? el("p", { class: "muted", id: "lab-not-drawn" },
      `Not drawn in ${unitText(drawnUnit)}: ${apart.length} reading${apart.length > 1 ? "s" : ""} recorded in another unit (`
      + [...new Set(apart.map((o) => `${unitText(o.unit) || "no unit"}, LOINC ${o.code}`))].join("; ") + ").") : "";
    clear(detail, el("h3", `${label}: history`), host, note);
    const unit = unitText(drawnUnit);
    // the caption's "latest" is the card's value (one source), not a point picked from the chart
    const own = latest && latest.value !== null && latest.value !== undefined && latest.time ? { x: Date.parse(latest.time), y: latest.value } : null;
    const chart = new Chart(host, { label: `${label} history`, unit, height: 160, digits: 1, empty: "No values recorded",
                                    yFormat: (y) => valueText(y), latest: () => own });
    chart.setSeries([{ id: codes.join(","), label, type: "line", x: points.map((o) => Date.parse(o.effective)), y: points.map((o) => o.value),
                       color: "#0b5cad", dots: 3, primary: true }]);
    host.querySelector("canvas").focus();
  }

  const labRows = latestLabRows(s.labs || [], quantities).map((row) => el("li",
    el("button", { type: "button", class: "link coded", title: rowTitle(row), "data-codes": row.codes.join(" "),
                   on: { click: () => showLab(row.codes, row.label, row.lab) } }, row.label),
    `: ${measure(row.lab)} `, el("span", { class: "when" }, isoDay(row.lab.time))));
  const cards = el("div", { class: "cards" },
    card("Patient", [
      el("li", `Sex: ${s.gender || "unknown"}`), el("li", `Born: ${s.birth_date ? day(s.birth_date) : "?"} (age ${s.age_years ?? "?"})`),
      el("li", `Height: ${measure(s.height)}`), el("li", `Weight: ${measure(s.weight)}`), el("li", `BMI: ${measure(s.bmi)}`),
    ]),
    card("Active problems", (s.problems || []).map((p) => el("li", nameNode(p, "span", {}, "SNOMED CT"), " ", el("span", { class: "when" }, p.onset ? `since ${isoDay(p.onset)}` : "")))),
    card("Medications", (s.medications || []).map((m) => el("li", m.display || m.code, m.dosage ? ` — ${m.dosage}` : "", " ",
      el("span", { class: "when" }, isoDay(m.authored_on))))),
    card("Allergies", (s.allergies || []).map((a) => el("li", nameNode(a, "span", {}, "SNOMED CT"),
      a.criticality ? el("span", { class: `chip ${a.criticality === "high" ? "crit" : ""}` }, a.criticality) : "",
      a.category && a.category.length ? el("span", { class: "when" }, ` ${a.category.join(", ")}`) : ""))),
    card("Latest vital signs", (s.vitals || []).map((v) => el("li", nameNode(v), `: ${measure(v)} `, el("span", { class: "when" }, isoDay(v.time))))),
    card("Latest labs (select one for its history)", labRows),
    card("Pharmacogenomics", ctx.summary.pharmacogenomics ? ctx.summary.pharmacogenomics.genes.map((g) =>
      el("li", `${g.gene} ${g.diplotype}: ${g.phenotype}${g.activity_score !== null && g.activity_score !== undefined ? ` (activity ${g.activity_score})` : ""}`)) : [],
      "no genotype on file"),
  );

  const filters = el("fieldset", { class: "filters" }, el("legend", "Show in the timeline"));
  const shown = new Set(KINDS.map(([k]) => k));
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  for (const [kind, label] of KINDS) {
    const box = el("input", { type: "checkbox", id: `tl-${kind}`, checked: true, on: { change: (e) => {
      if (e.target.checked) shown.add(kind); else shown.delete(kind);
      render();
    } } });
    filters.append(el("label", { for: `tl-${kind}`, class: "check" }, box, ` ${label}`));
  }
  const status = el("p", { class: "muted", role: "status" }, "Loading labs…");
  clear(panel, el("h2", { class: "visually-hidden" }, "Record"), cards, detail,
        el("section", { class: "timeline-box", "aria-labelledby": "timeline-title" },
          el("h2", { id: "timeline-title" }, "Timeline"), filters, status, timeline));

  let events = [];
  function build() {
    events = [];
    for (const e of s.encounters || []) events.push({ kind: "encounter", t: e.start, text: `${e.type || e.encounter_class || "Encounter"}${e.reason ? ` — ${e.reason}` : ""}` });
    for (const p of s.problems || []) if (p.onset) events.push({ kind: "problem", t: p.onset, text: `${shortName(p.code, p.display)} (onset)` });
    for (const m of s.medications || []) if (m.authored_on) events.push({ kind: "medication", t: m.authored_on, text: `${m.display || m.code} prescribed` });
    for (const i of s.immunizations || []) if (i.date) events.push({ kind: "immunization", t: i.date, text: i.display || i.code });
    for (const i of s.imaging || []) events.push({ kind: "imaging", t: i.started, text: `${i.modalities.join(", ")} ${i.description || ""} (${i.series} series)` });
    // labs: one entry per day, the values of that day together
    const byDay = new Map();
    for (const o of observations) {
      if (!labCodes.has(o.code) || !o.effective) continue;
      const key = isoDay(o.effective);
      if (!byDay.has(key)) byDay.set(key, { kind: "lab", t: o.effective, items: [] });
      byDay.get(key).items.push(`${shortName(o.code, o.display)} ${o.value !== null ? valueText(o.value) : o.value_text || ""} ${unitText(o.unit)}`.trim());
    }
    for (const entry of byDay.values()) events.push({ ...entry, text: entry.items.join(" · ") });
    events = events.filter((e) => e.t).sort((a, b) => Date.parse(b.t) - Date.parse(a.t));
  }
  function render() {
    const rows = events.filter((e) => shown.has(e.kind)).slice(0, 400).map((e) => el("li", { class: `tl-${e.kind}` },
      el("time", { datetime: new Date(e.t).toISOString() }, isoDay(e.t)), " ",
      el("span", { class: `kind kind-${e.kind}` }, KINDS.find(([k]) => k === e.kind)[1].replace(/s$/, "")), " ", e.text));
    clear(timeline, rows.length ? rows : el("li", { class: "muted" }, "Nothing to show."));
  }
  build();
  render();
  try {
    const page = await call(`/patients/${encodeURIComponent(ctx.id)}/observations`, { query: { limit: 1000 } });
    observations = page.items;
    loaded = true;
    status.textContent = `${page.total} observations on file${page.total > page.items.length ? ` (newest ${page.items.length} shown)` : ""}.`;
    build();
    render();
    if (chosen) showLab(...chosen);
  } catch (error) {
    failed = errorText(error);
    status.textContent = `Labs: ${failed}`;
    if (chosen) showLab(...chosen);
  }
  return { destroy() {} };
}
