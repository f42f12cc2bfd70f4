// History tab: every twin version (GET /patients/{id}/versions), newest first, with its provenance.
import { call } from "./api.js";
import { clear, dateTime, el } from "./dom.js";

const KIND_LABELS = { record: "Record import", pgx: "Pharmacogenomics", glucose: "Glucose twin fit",
  "glucose-simulation": "Glucose what-if", "drug-simulation": "Drug what-if" };

function summaryOf(v) {
  const p = v.provenance || {};
  if (v.kind === "record") return [p.source ? `from ${p.source}` : null, p.import_id ? `import ${String(p.import_id).slice(0, 8)}` : null].filter(Boolean).join(" · ");
  if (v.kind === "glucose-simulation") {
    const src = p.parameter_source || {};
    return [p.operation, p.regimens ? `regimens: ${p.regimens.join(", ")}` : null,
      src.virtual_patient ? `virtual patient ${src.virtual_patient}` : src.glucose_twin_version ? `glucose twin v${src.glucose_twin_version}` : null,
      p.ensemble ? `${p.ensemble.n} members` : null].filter(Boolean).join(" · ");
  }
  if (v.kind === "drug-simulation") return [p.operation, p.drug, p.model ? `model ${typeof p.model === "string" ? p.model : p.model.name || ""}` : null].filter(Boolean).join(" · ");
  if (v.kind === "glucose") return [p.data_span ? `${p.data_span.days} days, ${p.data_span.n_readings} readings` : null, p.model].filter(Boolean).join(" · ");
  return "";
}

export async function mountHistory(panel, ctx) {
  const versions = await call(`/patients/${encodeURIComponent(ctx.id)}/versions`);
  const kinds = [...new Set(versions.map((v) => v.kind))];
  const select = el("select", { id: "history-kind" }, el("option", { value: "" }, "All kinds"),
                    kinds.map((k) => el("option", { value: k }, KIND_LABELS[k] || k)));
  const body = el("tbody");
  const render = () => {
    const rows = versions.filter((v) => !select.value || v.kind === select.value).reverse().map((v) => el("tr",
      el("td", { class: "num" }, `v${v.version}`),
      el("td", KIND_LABELS[v.kind] || v.kind),
      el("td", el("time", { datetime: v.created_at }, dateTime(v.created_at))),
      el("td", v.actor),
      el("td", summaryOf(v),
        el("details", el("summary", "Provenance"), el("pre", { class: "prov" }, JSON.stringify(v.provenance, null, 2))))));
    clear(body, rows);
  };
  select.addEventListener("change", render);
  clear(panel,
    el("div", { class: "panel-head" }, el("h2", "Twin versions and provenance"),
      el("label", { for: "history-kind" }, "Kind "), select),
    el("p", { class: "muted" }, `${versions.length} version${versions.length === 1 ? "" : "s"}. Every import, fit and what-if run is kept as a numbered version with where it came from.`),
    el("div", { class: "table-wrap" }, el("table", { class: "versions" },
      el("thead", el("tr", ["Version", "Kind", "Created", "By", "What"].map((h) => el("th", { scope: "col" }, h)))), body)));
  render();
  return { destroy() {} };
}
