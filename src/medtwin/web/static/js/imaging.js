// Imaging tab: the patient's stored images as slice views (axial, coronal, sagittal; the label map drawn over
// the image: GET /patients/{id}/images/{vid}/slice, docs/imaging.md), trajectory planning on the label map
// (POST /patients/{id}/images/{vid}/plans), the ranked admissible candidates with their risk figures, a 3D view
// of the structures and trajectories (imaging3d.js, WebGL shipped with the page: nothing from a CDN), the
// rehearsal of the chosen path (nearest structures at each step), exports (CSV, Slicer markups) and the
// Procedure written into the record. The tab is offered only for a patient with stored images (patient.js asks
// hasImages). Every number shown is the API's; nothing is computed here but the drawing.
import { authFetch, call, download, errorText } from "./api.js";
import { clear, el } from "./dom.js";
import { createViewer } from "./imaging3d.js";

const AXES = ["axial", "coronal", "sagittal"];
const fixed = (x, digits) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
// Styles go through the CSSOM (node.style): the Content Security Policy refuses inline style attributes.
const styled = (node, style) => { Object.assign(node.style, style); return node; };
const point = (p) => `(${p.map((v) => fixed(v, 1)).join(", ")})`;

/** Whether the patient has stored images (the tab is shown only then). */
export async function hasImages(id) {
  try { return (await call(`/patients/${encodeURIComponent(id)}/images`)).length > 0; } catch { return false; }
}

/** Voxel indices (i, j, k) of a point in mm through the inverse of the volume's affine (voxel -> mm). */
export function worldToIndex(affine, p) {
  const m = [0, 1, 2].map((r) => [0, 1, 2].map((c) => affine[r][c]));
  const d = [p[0] - affine[0][3], p[1] - affine[1][3], p[2] - affine[2][3]];
  const cof = (r, c) => {
    const rows = [0, 1, 2].filter((x) => x !== r), cols = [0, 1, 2].filter((x) => x !== c);
    return m[rows[0]][cols[0]] * m[rows[1]][cols[1]] - m[rows[0]][cols[1]] * m[rows[1]][cols[0]];
  };
  const det = m[0][0] * cof(0, 0) - m[0][1] * cof(0, 1) + m[0][2] * cof(0, 2);
  // inverse = adjugate / det; adjugate[i][j] = (-1)^(i+j) cofactor(j, i)
  return [0, 1, 2].map((i) => [0, 1, 2].reduce((sum, j) => sum + ((i + j) % 2 ? -1 : 1) * cof(j, i) * d[j], 0) / det);
}

function sliceView(base, image, labels, axis) {
  const img = styled(el("img", { class: "im-slice", alt: `${axis} slice`, "data-axis": axis }),
                     { imageRendering: "pixelated", width: "100%", background: "#000" });
  const range = el("input", { type: "range", min: 0, max: 0, value: 0, id: `im-${axis}-index`, "aria-label": `${axis} slice index` });
  const caption = el("figcaption", { class: "muted" }, axis);
  async function load(index) {
    const query = { axis, ...(index === null ? {} : { index }), ...(labels && labels !== image ? { overlay: labels.volume_id } : {}) };
    const response = await authFetch(`${base}/${encodeURIComponent(image.volume_id)}/slice`, { query });
    if (!response.ok) { caption.textContent = `${axis}: slice unavailable (${response.status})`; return; }
    const [sp0, sp1] = (response.headers.get("X-Pixel-Spacing-mm") || "1,1").split(",").map(Number);
    const count = Number(response.headers.get("X-Slice-Count")), at = Number(response.headers.get("X-Slice-Index"));
    const blob = await response.blob();
    const url = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
    img.onload = () => { img.style.aspectRatio = `${img.naturalWidth * sp0} / ${img.naturalHeight * sp1}`; };
    img.src = url;
    range.max = String(count - 1);
    range.value = String(at);
    img.dataset.index = String(at);
    img.dataset.voxelAxis = response.headers.get("X-Slice-Axis") || "";
    caption.textContent = `${axis} ${at + 1} / ${count}`;
  }
  /** Show the slice through voxel ``ijk`` (continuous indices), e.g. a trajectory's target. */
  const goTo = (ijk) => {
    const k = { i: 0, j: 1, k: 2 }[img.dataset.voxelAxis];
    if (k !== undefined) load(Math.min(Math.max(Math.round(ijk[k]), 0), Number(range.max)));
  };
  range.addEventListener("change", () => load(Number(range.value)));
  load(null);
  return { node: styled(el("figure", { class: "im-view" }, img, range, caption), { margin: "0", flex: "1 1 0", minWidth: "180px" }),
           goTo, destroy: () => { img.removeAttribute("src"); } };
}

function labelOptions(volume) {
  return Object.entries(volume.labels || {}).map(([value, name]) => ({ value: Number(value), name }));
}

function planForm(labelsVolume, onPlan) {
  const options = labelOptions(labelsVolume);
  const target = el("select", { id: "im-target" }, options.map((o) => el("option", { value: o.value }, o.name)));
  const critical = options.map((o) => {
    const box = el("input", { type: "checkbox", id: `im-crit-${o.value}`, value: o.value, checked: /vessel|ventric|sulc|sinus|arter|vein/i.test(o.name) });
    const margin = styled(el("input", { type: "number", id: `im-margin-${o.value}`, min: 0, max: 50, step: 0.5, value: 2, "aria-label": `${o.name} margin in mm` }), { width: "4.5em" });
    return { o, box, margin, node: styled(el("label", box, ` ${o.name} `, margin, " mm"), { marginRight: "1em" }) };
  });
  const preferred = options.find((o) => /target|amygdala|hippocamp|lesion|tumou?r/i.test(o.name));
  if (preferred) target.value = String(preferred.value);
  const entry = el("select", { id: "im-entry" }, el("option", { value: "" }, "anywhere on the surface"),
    options.map((o) => el("option", { value: o.value, selected: /scalp|skin|cortex|entry/i.test(o.name) }, o.name)));
  const angle = styled(el("input", { type: "number", id: "im-max-angle", min: 1, max: 90, value: 30 }), { width: "4.5em" });
  const length = styled(el("input", { type: "number", id: "im-max-length", min: 1, max: 400, value: 100 }), { width: "5em" });
  const status = el("p", { class: "muted", role: "status", id: "im-plan-status" });
  const button = el("button", { type: "submit", id: "im-plan" }, "Plan trajectories");
  const form = el("form", { id: "im-plan-form", class: "im-form" },
    el("label", { for: "im-target" }, "Target "), target, " ", el("label", { for: "im-entry" }, "Entry on "), entry,
    styled(el("fieldset", el("legend", "Avoid (safety margin)"), critical.map((c) => c.node)), { border: "none", padding: "0", margin: "0.5em 0" }),
    el("label", { for: "im-max-angle" }, "Max angle to the skin normal (°) "), angle, " ",
    el("label", { for: "im-max-length" }, "Max length (mm) "), length, " ", button, status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const criticals = critical.filter((c) => c.box.checked && c.o.value !== Number(target.value))
      .map((c) => ({ label: c.o.value, margin_mm: Number(c.margin.value) }));
    const where = entry.value ? { entry_label: Number(entry.value) } : {};
    button.disabled = true;
    status.className = "muted";
    status.textContent = "Planning…";
    try {
      const plan = await call(`/patients/${encodeURIComponent(labelsVolume.patient)}/images/${encodeURIComponent(labelsVolume.volume_id)}/plans`, {
        body: { target_label: Number(target.value), ...where, criticals, max_angle_deg: Number(angle.value), max_length_mm: Number(length.value) } });
      status.textContent = `${plan.candidates.length} admissible trajectories of ${plan.evaluated} paths (plan ${plan.version}).`;
      await onPlan(plan.version);
    } catch (error) {
      status.className = "error";
      status.textContent = errorText(error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function candidateTable(plan, onSelect) {
  const named = plan.candidates.some((c) => c.electrode);  // an implantation: one trajectory per electrode
  const rows = plan.candidates.map((c) => el("tr", { "data-rank": c.rank, tabindex: 0, on: { click: () => onSelect(c.rank), keydown: (e) => { if (e.key === "Enter") onSelect(c.rank); } } },
    el("td", String(c.rank)), named ? el("td", { "data-field": "electrode" }, c.electrode) : null,
    el("td", { class: "num", "data-field": "risk" }, fixed(c.risk, 3)),
    el("td", { class: "num", "data-field": "min_distance_mm" }, fixed(c.min_distance_mm, 1)),
    el("td", c.nearest_structure), el("td", { class: "num", "data-field": "length_mm" }, fixed(c.length_mm, 1)),
    el("td", { class: "num", "data-field": "angle_deg" }, fixed(c.angle_deg, 1)),
    el("td", point(c.entry_mm)), el("td", point(c.target_mm))));
  const removed = Object.entries(plan.rejected).map(([k, n]) => `${n} by ${k.replace(/_/g, " ")}`).join(", ");
  return el("div", { class: "table-wrap" },
    el("table", { id: "im-candidates", class: "data" },
      el("caption", named
        ? `Plan ${plan.version}: ${plan.target_structure}, one admissible trajectory per electrode, every pair at least ` +
          `${fixed(plan.min_separation_mm, 1)} mm apart (risk 0 to 1, lower is safer; coordinates mm, ${plan.frame}).`
        : `Plan ${plan.version}: ${plan.candidates.length} admissible trajectories to ${plan.target_structure}, ` +
          `best first (risk 0 to 1, lower is safer; coordinates mm, ${plan.frame}). ${plan.evaluated} paths scored; removed: ${removed || "none"}.`),
      el("thead", el("tr", ["Rank", named ? "Electrode" : null, "Risk", "Nearest (mm)", "Structure", "Length (mm)", "Angle (°)", "Entry", "Target"].filter(Boolean).map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", rows)));
}

function rehearsalTable(r, onStep) {
  return el("table", { id: "im-rehearsal-steps", class: "data" },
    el("caption", `Rehearsal of candidate ${r.rank}: ${r.steps.length} steps over ${fixed(r.length_mm, 1)} mm ` +
                  "(choose a step to see it on the slices)"),
    el("thead", el("tr", ["Depth (mm)", "Inside", "Nearest", "Distance (mm)", "Margin (mm)"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", r.steps.map((s) => {
      const n = s.nearby[0];
      const show = () => onStep(s);
      return el("tr", { class: n && n.within_margin ? "warn" : "", tabindex: 0, "data-step": s.index,
                        on: { click: show, keydown: (e) => { if (e.key === "Enter") show(); } } },
        el("td", { class: "num" }, fixed(s.depth_mm, 1)),
        el("td", s.inside || "—"), el("td", n ? n.name : "—"), el("td", { class: "num" }, n ? fixed(n.distance_mm, 1) : "—"),
        el("td", { class: "num" }, n ? fixed(n.margin_mm, 1) : "—"));
    })));
}

export async function mountImaging(panel, ctx) {
  const id = encodeURIComponent(ctx.id);
  const base = `/patients/${id}/images`;
  const volumes = await call(base);
  const labels = volumes.find((v) => v.units === "label") || null;
  const image = volumes.find((v) => v.units !== "label") || labels || volumes[0];
  const views = AXES.map((axis) => sliceView(base, image, labels, axis));
  const canvas = styled(el("canvas", { id: "im-canvas", tabindex: 0, role: "img", "aria-label": "3D view of the structures and trajectories (drag or arrow keys to turn)" }),
                        { width: "100%", height: "420px", display: "block", borderRadius: "4px" });
  const viewer = createViewer(canvas);
  const plansBox = el("div", { id: "im-plans" });
  const rehearsalBox = el("div", { id: "im-rehearsal" });
  const actions = el("div", { class: "im-actions" });
  const title = (text) => el("h2", { class: "h3" }, text);
  clear(panel,
    title(`Images: ${image.series_description || image.modality} (${image.shape.join(" × ")}, ${image.spacing_mm.map((s) => fixed(s, 2)).join(" × ")} mm, ${image.frame})`),
    styled(el("div", { class: "im-slices" }, views.map((v) => v.node)), { display: "flex", gap: "0.75em", flexWrap: "wrap" }),
    labels ? [title("Trajectory planning"), planForm({ ...labels, patient: ctx.id }, (version) => showPlan(version))]
      : el("p", { class: "muted" }, "No label map among the images: planning needs one (structures by label)."),
    plansBox, el("div", { class: "im-3d" }, canvas, viewer ? null : el("p", { class: "error" }, "This browser cannot draw the 3D view (no WebGL).")),
    actions, rehearsalBox);

  async function rehearse(version, rank, plan) {
    viewer && viewer.select(rank);
    const chosen = plan.candidates.find((c) => c.rank === rank);
    if (chosen) views.forEach((v) => v.goTo(worldToIndex(image.affine, chosen.target_mm)));
    for (const row of plansBox.querySelectorAll("tr[data-rank]")) row.setAttribute("aria-selected", row.dataset.rank === String(rank) ? "true" : "false");
    clear(rehearsalBox, el("p", { class: "muted" }, "Rehearsing…"));
    try {
      const steps = await call(`/patients/${id}/trajectory-plans/${version}/rehearsal`, { query: { rank, step_mm: 2 } });
      clear(rehearsalBox, rehearsalTable(steps, (step) => views.forEach((v) => v.goTo(worldToIndex(image.affine, step.position_mm)))));
    } catch (error) {
      clear(rehearsalBox, el("p", { class: "error", role: "alert" }, errorText(error)));
    }
    const note = el("span", { class: "muted", role: "status", id: "im-export-status" });
    const button = (label, handler) => el("button", { type: "button", class: "secondary", on: { click: async () => {
      try { note.textContent = await handler(); } catch (error) { note.textContent = errorText(error); } } } }, label);
    clear(actions,
      button("CSV (LPS)", async () => { await download(`/patients/${id}/trajectory-plans/${version}/export?format=csv&frame=LPS&rank=${rank}`, `plan-${version}-${rank}.csv`); return "CSV downloaded."; }),
      button("Slicer markups (LPS)", async () => { await download(`/patients/${id}/trajectory-plans/${version}/export?format=markups&frame=LPS&rank=${rank}`, `plan-${version}-${rank}.mrk.json`); return "Markups downloaded."; }),
      button("Write Procedure to the record", async () => {
        const r = await call(`/patients/${id}/trajectory-plans/${version}/procedure?rank=${rank}`, { method: "POST" });
        return `Procedure/${r.procedure_id} (${r.outcome}, status preparation).`;
      }), " ", note);
  }

  async function showPlan(version) {
    clear(plansBox, el("p", { class: "muted" }, "Loading the plan…"));
    const plan = await call(`/patients/${id}/trajectory-plans/${version}`);
    const listed = await call(`/patients/${id}/trajectory-plans`);
    const picker = el("select", { id: "im-plan-version", "aria-label": "Stored plans" }, listed.map((p) =>
      el("option", { value: p.version, selected: p.version === plan.version }, `Plan ${p.version}: ${p.target_structure}, best risk ${fixed(p.best_risk, 3)}`)));
    picker.addEventListener("change", () => showPlan(Number(picker.value)));
    clear(plansBox, title("Ranked trajectories"), picker, candidateTable(plan, (rank) => rehearse(plan.version, rank, plan)));
    if (viewer) viewer.setScene(await call(`/patients/${id}/trajectory-plans/${plan.version}/scene`));
    if (plan.candidates.length) await rehearse(plan.version, plan.candidates[0].rank, plan);
  }

  const stored = await call(`/patients/${id}/trajectory-plans`);
  if (stored.length) await showPlan(stored[0].version);
  else clear(plansBox, el("p", { class: "muted", id: "im-no-plans" }, "No trajectory plan yet."));
  return { destroy() { views.forEach((v) => v.destroy()); viewer && viewer.destroy(); } };
}
