// The twin page: who the patient is (summary header), the latest state (tiles, always visible), and tabs:
// Live (charts + alerts), Record (summary, timeline), CGM report, What-if, Tumour (only with tumour-size
// readings in the record), History (versions, provenance).
// Each tab is built the first time it is opened and torn down when the page is left.
import { call, download, errorText } from "./api.js";
import { $, el, clear, day } from "./dom.js";
import { mountLive, panelsRequest, prefetchLive } from "./live.js";
import { sweepCharts } from "./chart.js";
import { shortName } from "./vocab.js";

export const TABS = [
  ["live", "Live"], ["record", "Record"], ["cgm", "CGM report"], ["whatif", "What-if"], ["history", "History"],
];
const LOADERS = {
  record: () => import("./record.js").then((m) => m.mountRecord),
  cgm: () => import("./cgm.js").then((m) => m.mountCgm),
  whatif: () => import("./whatif.js").then((m) => m.mountWhatIf),
  history: () => import("./history.js").then((m) => m.mountHistory),
  tumour: () => import("./tumour.js").then((m) => m.mountTumour),
  imaging: () => import("./imaging.js").then((m) => m.mountImaging),
};
// The Tumour tab is offered only for a patient whose record holds tumour-size readings (tumour.js asks).
const TUMOUR_TAB = ["tumour", "Tumour"];
const withTumour = (id) => import("./tumour.js").then((m) => m.hasTumourSizes(id)).catch(() => false)
  .then((has) => (has ? [...TABS.slice(0, -1), TUMOUR_TAB, TABS[TABS.length - 1]] : TABS));
// The Imaging tab (slices, trajectory plans, 3D view) only for a patient with stored images (imaging.js asks).
const withImaging = (id, ready) => Promise.all([ready, import("./imaging.js").then((m) => m.hasImages(id)).catch(() => false)])
  .then(([tabs, has]) => (has ? [...tabs.slice(0, -1), ["imaging", "Imaging"], tabs[tabs.length - 1]] : tabs));

// The CGM report tab only for a patient with a CGM panel or CGM data (the panels answer says; #15 item 9).
const withCgmReport = (panels, ready) => Promise.all([ready, panels]).then(([tabs, p]) =>
  (!p || p.panels.some((x) => x.key === "cgm" && x.shown) || p.device_metrics.includes("glucose")
    ? tabs : tabs.filter(([key]) => key !== "cgm")));

let page = null;  // {id, ctx, mounted: {tab: handle}, panels, tabs}

export function hidePatient() {
  if (!page) return;
  for (const handle of Object.values(page.mounted)) if (handle && handle.destroy) handle.destroy();
  page = null;
  $("patient-view").replaceChildren();
  sweepCharts();
}

// A PGx chip says what may be acted on: a callable gene's CPIC phenotype; a phenotype all candidate diplotypes
// agree on as "inferred" (shown, never used for a dose); otherwise "not callable", with the reason as the title.
function pgxChip(g) {
  const why = g.reason || "";
  if (g.callable !== false) {
    const score = g.activity_score !== null && g.activity_score !== undefined ? `, activity score ${g.activity_score}` : "";
    return el("span", { class: "chip pgx", "data-gene": g.gene, title: `diplotype ${g.diplotype}${score}` },
              `${g.gene} ${g.phenotype}`);
  }
  if (g.inferred) {
    return el("span", { class: "chip pgx", "data-gene": g.gene, "data-callable": "false", title: why },
              `${g.gene} ${g.phenotype} · inferred (all candidates agree)`);
  }
  return el("span", { class: "chip pgx", "data-gene": g.gene, "data-callable": "false", title: why },
            `${g.gene} not callable`);
}

function header(ctx) {
  const s = ctx.summary.summary;
  const facts = [s.age_years !== null && s.age_years !== undefined ? `${s.age_years} y` : null, s.gender,
    s.birth_date ? `born ${day(s.birth_date)}` : null, s.deceased ? "deceased" : null,
    `twin v${ctx.summary.version}`].filter(Boolean).join(" · ");
  const allergies = (s.allergies || []).map((a) => el("span", {
    class: `chip allergy ${a.criticality === "high" ? "crit" : ""}`, title: a.criticality ? `criticality: ${a.criticality}` : "",
  }, shortName(a.code, a.display) || "allergy"));
  const problems = (s.problems || []).map((p) => el("span", { class: "chip", title: p.display || "" }, shortName(p.code, p.display) || "?"));
  const meds = (s.medications || []).map((m) => el("span", { class: "chip med" }, m.display || m.code || "?"));
  const genes = ctx.summary.pharmacogenomics ? ctx.summary.pharmacogenomics.genes : [];
  const pgx = genes.map(pgxChip);
  const reportStatus = el("span", { class: "muted report-status", role: "status" });
  const reportButton = (kind, label) => el("button", { type: "button", class: "secondary", id: `report-${kind}`, on: {
    click: async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      reportStatus.textContent = `Preparing the ${label} report…`;
      try {
        const blob = await download(`/patients/${encodeURIComponent(ctx.id)}/report.${kind}`,
                                    `medtwin-report-${ctx.id.slice(0, 8)}.${kind}`);
        reportStatus.textContent = `${label} report downloaded (${Math.round(blob.size / 1024)} kB).`;
      } catch (error) {
        reportStatus.textContent = `Report: ${errorText(error)}`;
      } finally {
        button.disabled = false;
      }
    } } }, `Report (${label})`);
  return el("div", { class: "pt-head" },
    el("div", { class: "pt-id" },
      el("h1", { id: "patient-title" }, s.name || ctx.id),
      el("p", { class: "facts" }, facts),
      el("dl", { class: "pt-lists" },
        el("dt", "Allergies"), el("dd", allergies.length ? allergies : el("span", { class: "muted" }, "none recorded")),
        el("dt", "Problems"), el("dd", problems.length ? problems : el("span", { class: "muted" }, "none recorded")),
        el("dt", "Medications"), el("dd", meds.length ? meds : el("span", { class: "muted" }, "none recorded")),
        pgx.length ? [el("dt", "Pharmacogenomics"), el("dd", pgx)] : null)),
    el("div", { class: "pt-actions" }, reportButton("pdf", "PDF"), reportButton("html", "HTML"), reportStatus));
}

function tabBar(id, active, tabs) {
  const list = el("div", { role: "tablist", class: "tabs", "aria-label": "Twin views" });
  for (const [key, label] of tabs) {
    list.append(el("a", {
      role: "tab", id: `tab-${key}`, href: `#/patients/${encodeURIComponent(id)}/${key}`,
      "aria-controls": `panel-${key}`, "aria-selected": key === active ? "true" : "false",
      tabindex: key === active ? "0" : "-1",
    }, label));
  }
  list.addEventListener("keydown", (event) => {
    const tabs = [...list.querySelectorAll("[role=tab]")];
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (event.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (event.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = tabs.length - 1;
    if (j === null) return;
    event.preventDefault();
    tabs[j].focus();
    tabs[j].click();
  });
  return list;
}

async function select(tab) {
  const { id, ctx, tabs } = page;
  if (!tabs.some(([key]) => key === tab)) tab = "live";
  page.tab = tab;
  for (const [key] of tabs) {
    const selected = key === tab;
    const link = $(`tab-${key}`);
    link.setAttribute("aria-selected", selected ? "true" : "false");
    link.tabIndex = selected ? 0 : -1;
    $(`panel-${key}`).hidden = !selected;
  }
  document.title = `${ctx.summary.summary.name || id} · ${tabs.find(([k]) => k === tab)[1]} · medtwin`;
  if (tab !== "live" && !(tab in page.mounted)) {
    page.mounted[tab] = null;
    const panel = $(`panel-${tab}`);
    clear(panel, el("p", { class: "muted" }, "Loading…"));
    try {
      const mount = await LOADERS[tab]();
      if (!page || page.id !== id) return;
      page.mounted[tab] = await mount(panel, ctx);
    } catch (error) {
      clear(panel, el("p", { class: "error", role: "alert" }, errorText(error)));
      delete page.mounted[tab];
    }
  }
}

export async function showPatient(id, tab) {
  if (page && page.id === id) { await select(tab); return; }
  hidePatient();
  const started = performance.now();
  const view = $("patient-view");
  clear(view, el("p", { class: "muted" }, "Loading…"));
  page = { id, mounted: {}, tab, started };
  let summary;
  const panelsReady = panelsRequest(id).catch(() => null);
  const prefetched = tab === "live" ? prefetchLive(id, panelsReady) : null;
  const tabsReady = withCgmReport(panelsReady, withImaging(id, withTumour(id)));  // alongside the summary request
  try {
    summary = await call(`/patients/${encodeURIComponent(id)}`);
  } catch (error) {
    clear(view, el("nav", { class: "crumbs" }, el("a", { href: "#/" }, "← All patients")),
          el("p", { class: "error", role: "alert" }, errorText(error)));
    return;
  }
  if (!page || page.id !== id) return;
  const ctx = { id: summary.patient_id, summary };
  const tabs = await tabsReady;
  if (!page || page.id !== id) return;
  page.ctx = ctx;
  page.tabs = tabs;
  const tiles = el("section", { class: "tiles", id: "tiles", "aria-label": "Latest state" });
  const panels = tabs.map(([key]) => el("section", {
    role: "tabpanel", id: `panel-${key}`, "aria-labelledby": `tab-${key}`, class: "panel", hidden: true, tabindex: "-1",
  }));
  clear(view, el("nav", { class: "crumbs" }, el("a", { href: "#/" }, "← All patients")),
        header(ctx), tiles, tabBar(id, tab, tabs), panels);
  page.mounted.live = mountLive($("panel-live"), tiles, ctx, started, prefetched);
  await select(tab);
}
