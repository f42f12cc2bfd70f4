"use strict";
// The medtwin dashboard: sign in, list patients, read a twin summary. All data comes from /api/v1 with
// the signed-in user's token; everything is written with textContent (no HTML from data).
const api = "/api/v1";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("medtwin.token");

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, token ? { Authorization: `Bearer ${token}` } : {});
  const response = await fetch(api + path, Object.assign({}, options, { headers }));
  if (response.status === 401) { signOut(); throw new Error("Your session has ended: sign in again."); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || body.title || `HTTP ${response.status}`);
  return body;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function show(view) {
  for (const id of ["login-view", "list-view", "patient-view"]) $(id).hidden = id !== view;
  $("logout").hidden = view === "login-view";
}

function signOut() {
  token = null;
  sessionStorage.removeItem("medtwin.token");
  $("who").textContent = "";
  show("login-view");
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  const form = new URLSearchParams({ grant_type: "password", username: $("username").value,
                                     password: $("password").value });
  const response = await fetch(api + "/auth/token", { method: "POST", body: form });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) { $("login-error").textContent = body.detail || "Sign-in failed"; return; }
  token = body.access_token;
  sessionStorage.setItem("medtwin.token", token);
  await start();
});

$("logout").addEventListener("click", signOut);
$("back").addEventListener("click", () => { show("list-view"); location.hash = ""; });
let searchTimer;
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadPatients, 250); });

async function loadPatients() {
  const query = $("search").value.trim();
  const page = await call(`/patients?limit=200${query ? "&name=" + encodeURIComponent(query) : ""}`);
  const body = $("patients").querySelector("tbody");
  body.replaceChildren();
  for (const p of page.items) {
    const row = el("tr");
    row.tabIndex = 0;
    for (const value of [p.name || p.id, p.gender, p.age_years, p.active_problems, p.active_medications,
                         p.twin_version]) row.append(el("td", value ?? "—"));
    const open = () => { location.hash = p.id; openPatient(p.id); };
    row.addEventListener("click", open);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    body.append(row);
  }
}

function when(value) { return value ? new Date(value).toISOString().slice(0, 10) : ""; }
function measure(m) { return m ? `${m.value ?? m.text} ${m.unit || ""}`.trim() : "—"; }

function card(title, items, render) {
  const box = el("section", null, "card");
  box.append(el("h3", `${title} (${items.length})`));
  const list = el("ul");
  for (const item of items) {
    const [text, date] = render(item);
    const li = el("li", text);
    if (date) li.append(" ", el("span", date, "when"));
    list.append(li);
  }
  if (!items.length) list.append(el("li", "none recorded"));
  box.append(list);
  return box;
}

async function openPatient(id) {
  const twin = await call(`/patients/${encodeURIComponent(id)}`);
  const s = twin.summary;
  $("patient-title").textContent = s.name || s.patient_id;
  $("patient-facts").textContent = `${s.gender || "sex unknown"} · born ${s.birth_date || "?"} · age ` +
    `${s.age_years ?? "?"} · height ${measure(s.height)} · weight ${measure(s.weight)} · BMI ${measure(s.bmi)} · ` +
    `twin version ${twin.version} (${twin.provenance.imported_at ? "imported " + when(twin.provenance.imported_at) : ""})`;
  const cards = $("patient-cards");
  cards.replaceChildren(
    card("Active problems", s.problems, (p) => [p.display, when(p.onset)]),
    card("Active medications", s.medications, (m) => [m.display, when(m.authored_on)]),
    card("Allergies", s.allergies, (a) => [a.display, a.criticality || ""]),
    card("Latest vital signs", s.vitals, (v) => [`${v.display || v.code}: ${measure(v)}`, when(v.time)]),
    card("Latest labs", s.labs, (v) => [`${v.display || v.code}: ${measure(v)}`, when(v.time)]),
    card("Encounters", s.encounters.slice(0, 12), (e) => [`${e.type || e.encounter_class || "encounter"}` +
      (e.reason ? ` — ${e.reason}` : ""), when(e.start)]),
    card("Immunisations", s.immunizations.slice(0, 12), (i) => [i.display, when(i.date)]),
    card("Imaging studies", s.imaging, (i) => [`${i.modalities.join(", ")} ${i.description || ""}`, when(i.started)]),
  );
  if (twin.pharmacogenomics) {
    const genes = twin.pharmacogenomics.genes || twin.pharmacogenomics;
    if (Array.isArray(genes)) cards.append(card("Pharmacogenomics", genes, (g) => [
      `${g.gene}: ${g.diplotype || ""} ${g.phenotype || ""}`, ""]));
  }
  show("patient-view");
}

async function start() {
  if (!token) { show("login-view"); return; }
  try {
    const me = await call("/auth/me");
    $("who").textContent = `${me.username || me.subject || ""} (${me.role})`;
  } catch (error) { return; }
  show("list-view");
  await loadPatients();
  if (location.hash.length > 1) await openPatient(decodeURIComponent(location.hash.slice(1)));
}

start().catch((error) => { $("login-error").textContent = error.message; });
